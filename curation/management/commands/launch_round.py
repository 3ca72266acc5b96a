import json
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from curation import services
from curation.management.defaults import default_policy
from curation.models import Policy, ProblemSet, Round, RoundKind, RunStatus
from curation.selectors import round_progress


class Command(BaseCommand):
    help = "Create a round and launch it: its chunks go to the rollout workers."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--name", required=True)
        parser.add_argument("--kind", choices=RoundKind.values, default=RoundKind.SEED)
        parser.add_argument("--problem-set", action="append", required=True, dest="problem_sets")
        parser.add_argument("--policy", help="A registered policy name (default: the tiny one).")
        parser.add_argument("--split", choices=["train", "test"])
        parser.add_argument("--samples-hinted", type=int)
        parser.add_argument("--samples-plain", type=int)
        parser.add_argument("--temperature", type=float)
        parser.add_argument("--top-p", type=float)
        parser.add_argument("--max-tokens", type=int)
        parser.add_argument(
            "--hint-config", type=json.loads, help="JSON, e.g. '{\"end_repeats\": 2}'"
        )
        parser.add_argument("--tool-config", type=json.loads, help="JSON: max_calls, timeout_s...")
        parser.add_argument("--wait", action="store_true", help="Follow progress until it ends.")

    def handle(self, *args, **opts) -> None:
        sets = list(ProblemSet.objects.filter(name__in=opts["problem_sets"]))
        missing = set(opts["problem_sets"]) - {s.name for s in sets}
        if missing:
            raise CommandError(f"unknown problem sets: {', '.join(sorted(missing))}")
        if opts["policy"]:
            policy = Policy.objects.filter(name=opts["policy"]).first()
            if policy is None:
                raise CommandError(f"unknown policy {opts['policy']!r}")
        else:
            policy = default_policy()
        if Round.objects.filter(name=opts["name"]).exists():
            raise CommandError(f"a round named {opts['name']!r} exists already")
        try:
            round_ = services.round_create(
                name=opts["name"],
                kind=opts["kind"],
                policy=policy,
                problem_sets=sets,
                split=opts["split"] or "",
                samples_hinted=opts["samples_hinted"],
                samples_plain=opts["samples_plain"],
                temperature=opts["temperature"],
                top_p=opts["top_p"],
                max_tokens=opts["max_tokens"],
                hint_config=opts["hint_config"],
                tool_config=opts["tool_config"],
            )
            round_ = services.round_launch(round=round_, chunk_size=settings.ROLLOUT_CHUNK_SIZE)
        except (ValueError, services.ConflictError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"launched round {round_.name!r} ({round_.kind}, policy {policy.name}): "
            f"{round_.total} trajectories in {round_.chunks.count()} chunks"
        )
        if opts["wait"]:
            self._follow(round_)

    def _follow(self, round_: Round) -> None:
        while True:
            round_.refresh_from_db()
            progress = round_progress(round=round_)
            self.stdout.write(
                f"\r{progress['done']}/{progress['total']} trajectories, "
                f"{progress['tokens_per_s'] or 0:.0f} tokens/s, {progress['errors']} errors",
                ending="",
            )
            self.stdout.flush()
            if round_.status not in (RunStatus.QUEUED, RunStatus.RUNNING):
                self.stdout.write(
                    f"\nround {round_.status}" + (f": {round_.error}" if round_.error else "")
                )
                if round_.status != RunStatus.DONE:
                    raise CommandError(f"round {round_.name} ended {round_.status}")
                return
            time.sleep(2)
