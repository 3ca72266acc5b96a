from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from curation.importing import file_records, problem_set_import
from curation.loop import LoopConfig, LoopError, approve_all_scripted, run_loop, wait_for_annotators
from curation.management.defaults import default_policy
from curation.models import Policy, ProblemSet, Split

SAMPLES = {
    "sample": ("curation/data/sample_problems.jsonl", Split.TRAIN),
    "sample-eval": ("curation/data/sample_eval.jsonl", Split.TEST),
}


class Command(BaseCommand):
    help = (
        "Run the whole Hint-RFT loop: seed round → D_seed → SFT → START-0 → RFT round → D_START → "
        "SFT → START → eval rounds → the comparison table. Needs running rollout and train workers."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--name", default="loop", help="Prefix of what the loop creates.")
        parser.add_argument("--train-set", action="append", help="Default: the bundled sample.")
        parser.add_argument("--eval-set", action="append", help="Default: the bundled sample-eval.")
        parser.add_argument("--base", help="Base policy name (default: the tiny policy).")
        parser.add_argument("--rft-samples", type=int, default=4)
        parser.add_argument("--max-tokens", type=int, default=1024)
        parser.add_argument(
            "--auto-approve",
            action="store_true",
            help="Approve every candidate without review (unattended runs); otherwise wait for "
            "the annotators to review them in the UI.",
        )
        parser.add_argument("--csv", help="Also write the evaluation table to this CSV file.")
        parser.add_argument(
            "--ablations",
            action="store_true",
            help="Also the paper's controls: START + Hint-infer, and the RFT control without "
            "tools (the base's correct samples, no tools, no hints, trained like D_START).",
        )

    def handle(self, *args, **opts) -> None:
        for name, (path, split) in SAMPLES.items():
            if not ProblemSet.objects.filter(name=name).exists():
                report = problem_set_import(
                    name=name, records=file_records(Path(path)), split=split
                )
                self.stdout.write(report.summary())
        cfg = LoopConfig(
            name=opts["name"],
            train_sets=self._sets(opts["train_set"] or ["sample"]),
            eval_sets=self._sets(opts["eval_set"] or ["sample-eval"]),
            base=self._policy(opts["base"]),
            rft_samples=opts["rft_samples"],
            max_tokens=opts["max_tokens"],
            ablations=opts["ablations"],
        )
        approve = (
            approve_all_scripted
            if opts["auto_approve"]
            else wait_for_annotators(self.stdout.write, url="http://127.0.0.1:8000/")
        )
        try:
            result = run_loop(cfg, approve=approve, say=self.stdout.write)
        except (LoopError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        table = result.table()
        self.stdout.write("\n" + table.to_csv())
        if opts["csv"]:
            with open(opts["csv"], "w") as fh:
                fh.write(table.to_csv())

    def _sets(self, names: list[str]) -> list[ProblemSet]:
        sets = list(ProblemSet.objects.filter(name__in=names))
        if missing := set(names) - {s.name for s in sets}:
            raise CommandError(f"unknown problem sets: {', '.join(sorted(missing))}")
        return sets

    def _policy(self, name: str | None) -> Policy:
        if name is None:
            return default_policy()
        policy = Policy.objects.filter(name=name).first()
        if policy is None:
            raise CommandError(f"unknown policy {name!r}")
        return policy
