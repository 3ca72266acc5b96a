from django.apps import AppConfig


class WebappConfig(AppConfig):
    """Holds the project's templates and static files (htmx, styles)."""

    name = "webapp"
