import time

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from curation.demo import DemoStatus, demo_status_write
from curation.models import Round


class Command(BaseCommand):
    help = (
        "The demo's first round: build the tiny policy (its progress in DEMO_STATUS_FILE, which "
        "the pages show), then launch a seed round on the sample problems."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--problem-set", default="sample")

    def handle(self, *args, problem_set: str, **options) -> None:
        from transformers import TrainerCallback

        from training.tiny_policy import build_tiny_policy

        path = settings.DEMO_STATUS_FILE
        if path is None:
            raise CommandError("DEMO_STATUS_FILE is not set (scripts/demo.sh sets it)")

        def report(status: DemoStatus) -> None:
            demo_status_write(path=path, status=status)

        class Progress(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                if state.max_steps:
                    percent = 100 * state.global_step // state.max_steps
                    report(DemoStatus("building", percent=percent))

        report(DemoStatus("building", percent=0))
        name = f"demo-seed-{time.strftime('%Y%m%d-%H%M%S')}"
        try:
            build_tiny_policy(callbacks=[Progress()], log=self.stdout.write)
            report(DemoStatus("launching"))
            call_command(
                "launch_round",
                name=name,
                kind="seed",
                problem_sets=[problem_set],
                stdout=self.stdout,
            )
        except Exception as exc:  # shown on the pages, then raised for the log
            report(DemoStatus("failed", error=str(exc) or type(exc).__name__))
            raise
        report(DemoStatus("ready", round_id=Round.objects.get(name=name).pk))
