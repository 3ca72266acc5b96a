"""Fail fast, in one line, when the database or the broker cannot be reached."""

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.db.utils import OperationalError
from kombu import Connection


def _redacted(url: str) -> str:
    """The address tried, without a password."""
    if "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}@{host}"


class Command(BaseCommand):
    help = (
        "Check that DATABASE_URL and CELERY_BROKER_URL are reachable (creates a missing database)."
    )

    def handle(self, *args, **options) -> None:
        self._check_database()
        self._check_broker()
        self.stdout.write("services ok")

    def _check_database(self) -> None:
        db = settings.DATABASES["default"]
        if db["ENGINE"].endswith("sqlite3"):
            return
        address = f"{db.get('HOST') or 'localhost'}:{db.get('PORT') or 5432}/{db['NAME']}"
        try:
            connection.ensure_connection()
        except OperationalError as exc:
            if f'database "{db["NAME"]}" does not exist' in str(exc):
                self._create_database(db["NAME"])
                return
            reason = str(exc).strip().splitlines()[0].split(": ", 1)[-1]
            raise CommandError(f"DATABASE_URL: cannot connect to {address}: {reason}") from exc

    def _create_database(self, name: str) -> None:
        # Connect to the maintenance database, as Django's test runner does.
        with connection._nodb_cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        self.stdout.write(f"created database {name}")

    def _check_broker(self) -> None:
        url = settings.CELERY_BROKER_URL
        if url.startswith("filesystem://"):
            for folder in settings.CELERY_BROKER_TRANSPORT_OPTIONS.values():
                if isinstance(folder, str):
                    Path(folder).mkdir(parents=True, exist_ok=True)
            return
        try:
            with Connection(url, connect_timeout=3) as conn:
                conn.ensure_connection(max_retries=1)
        except Exception as exc:  # kombu raises transport-specific errors
            raise CommandError(
                f"CELERY_BROKER_URL: cannot connect to {_redacted(url)}: {exc}"
            ) from exc
