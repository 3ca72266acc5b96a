from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from curation.importing import file_records, problem_set_import
from curation.models import Domain, Split
from curation.problems import FORMATS


class Command(BaseCommand):
    help = (
        "Import a problem set from a JSONL file, a Parquet/Arrow/CSV file or a datasets folder, "
        "in a published benchmark's format (found from its columns). All or nothing: a bad line "
        "imports nothing and is reported."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("path", type=Path)
        parser.add_argument("--set", dest="name", help="Problem set name (default: the file stem).")
        parser.add_argument("--split", choices=Split.values, default=Split.TRAIN)
        parser.add_argument("--domain", choices=Domain.values, help="Domain when records omit it.")
        parser.add_argument(
            "--id-field",
            help="The field that identifies a record, or 'line' to number them (default: "
            "id, idx, question_number... whichever the records have).",
        )
        parser.add_argument(
            "--format",
            choices=[f.name for f in FORMATS],
            help="The file's format (default: the one its columns match).",
        )

    def handle(self, *args, path, name, split, domain, id_field, format, **options) -> None:
        if not path.exists():
            raise CommandError(f"{path}: no such file or folder")
        name = name or path.stem.replace("_", "-")
        try:
            report = problem_set_import(
                name=name,
                records=file_records(path),
                split=split,
                default_domain=domain,
                source=str(path),
                id_field=id_field,
                format=format,
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if not report.ok:
            raise CommandError(report.summary())
        self.stdout.write(report.summary())
