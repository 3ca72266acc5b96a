import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from curation.exporting import FORMATS, Export, export_folder
from curation.models import DatasetVersion


class Command(BaseCommand):
    help = (
        "Export a frozen dataset version as JSONL (TRL's messages or prompt/completion format), "
        "Parquet, or its preference pairs (TRL's preference format), streamed in constant "
        "memory, to a file or standard output; or, with --output-dir, a Hugging Face folder "
        "(the rows, the pairs and a README.md dataset card) that `datasets.load_dataset` reads."
    )

    def create_parser(self, prog_name: str, subcommand: str, **kwargs):
        # `--version N` picks the dataset version: it replaces Django's `--version` flag.
        return super().create_parser(prog_name, subcommand, conflict_handler="resolve", **kwargs)

    def add_arguments(self, parser) -> None:
        parser.add_argument("name", help="Dataset name, e.g. d-seed.")
        parser.add_argument(
            "--version", dest="number", type=int, help="Version number (default: the latest)."
        )
        parser.add_argument("--format", choices=FORMATS, default="messages")
        parser.add_argument("--output", type=Path, help="File to write (default: standard output).")
        parser.add_argument(
            "--output-dir",
            type=Path,
            help="Write the Hugging Face layout to this new or empty folder instead: "
            "sft/train.*, preference/train.* and README.md (--format is not used).",
        )
        parser.add_argument(
            "--file-type", choices=["jsonl", "parquet"], default="jsonl", help="With --output-dir."
        )
        parser.add_argument(
            "--license",
            default="unknown",
            help="The card's license field (a Hugging Face licence id), with --output-dir.",
        )

    def handle(
        self, *args, name, number, format, output, output_dir, file_type, license, **options
    ) -> None:
        versions = DatasetVersion.objects.filter(dataset__name=name).select_related("dataset")
        version = (
            versions.filter(number=number).first()
            if number
            else versions.order_by("-number").first()
        )
        if version is None:
            which = f"version {number}" if number else "versions"
            raise CommandError(f"dataset {name!r} has no {which}")
        if output_dir is not None:
            if output is not None:
                raise CommandError("give --output or --output-dir, not both")
            try:
                written = export_folder(
                    version=version, folder=output_dir, file_type=file_type, license=license
                )
            except ValueError as exc:
                raise CommandError(str(exc)) from None
            for path in written.values():
                self.stderr.write(str(path))
            return
        export = Export(version, format)
        if output is None:
            for chunk in export.chunks():
                sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
            return
        # A regular file appears complete or not at all; a device or pipe is written directly.
        special = output.exists() and not output.is_file()
        target = output if special else output.with_name(output.name + ".partial")
        with target.open("wb") as fh:
            for chunk in export.chunks():
                fh.write(chunk)
        if not special:
            target.replace(output)
        self.stderr.write(f"{export.label}: {export.row_count} rows -> {output}")
