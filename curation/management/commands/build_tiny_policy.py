from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Build the project's tiny policy offline (tokenizer, Qwen2-shaped model, SFT on synthetic "
        "START trajectories), cached by content hash under .cache/tiny-policy/."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--force", action="store_true", help="Rebuild even if cached.")
        parser.add_argument(
            "--family",
            default="pool",
            choices=("pool", "arithmetic"),
            help="pool: the default policy, 40 problems it memorises (demo, tests); arithmetic: "
            "a policy that generalises to unseen problems (the loop's fidelity test).",
        )

    def handle(self, *args, force: bool, family: str, **options) -> None:
        from training.tiny_policy import build_tiny_policy

        path = build_tiny_policy(force=force, family=family)
        self.stdout.write(f"tiny policy: {path}")
