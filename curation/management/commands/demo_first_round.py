import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from curation.demo import DemoStatus, demo_rounds_launch, demo_status_write
from curation.management.defaults import default_policy
from curation.models import ProblemSet


class Command(BaseCommand):
    help = (
        "The demo's rounds: build the tiny policy (its progress in DEMO_STATUS_FILE, which the "
        "pages show), then launch a seed round on the sample problems, and an eval round and an "
        "eval sweep on the held-out ones (the Evaluation page's table and scaling chart)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--problem-set", default="sample")
        parser.add_argument("--eval-set", default="sample-eval")

    def handle(self, *args, problem_set: str, eval_set: str, **options) -> None:
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
        try:
            build_tiny_policy(callbacks=[Progress()], log=self.stdout.write)
            report(DemoStatus("launching"))
            names = [problem_set, eval_set]
            sets = {s.name: s for s in ProblemSet.objects.filter(name__in=names)}
            if missing := set(names) - set(sets):
                raise CommandError(f"unknown problem sets: {', '.join(sorted(missing))}")
            rounds = demo_rounds_launch(
                name=f"demo-{time.strftime('%Y%m%d-%H%M%S')}",
                policy=default_policy(),
                train_set=sets[problem_set],
                eval_set=sets[eval_set],
            )
        except Exception as exc:  # shown on the pages, then raised for the log
            report(DemoStatus("failed", error=str(exc) or type(exc).__name__))
            raise
        for round_ in rounds.all:
            self.stdout.write(
                f"launched round {round_.name!r} ({round_.kind}, policy {round_.policy.name}): "
                f"{round_.total} trajectories in {round_.chunks.count()} chunks"
            )
        report(DemoStatus("ready", round_id=rounds.seed.pk))
