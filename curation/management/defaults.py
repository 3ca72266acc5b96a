"""What the commands use when the user names no policy."""

from django.conf import settings

from curation import services
from curation.models import Policy


def default_policy() -> Policy:
    """DEFAULT_POLICY_PATH when set, else the tiny policy (built now if it is not cached yet).

    The tiny policy comes from `training/`; commands may reach it, the domain modules may not.
    """
    if settings.DEFAULT_POLICY_PATH:
        path = settings.DEFAULT_POLICY_PATH
        return services.policy_register(name=path.rstrip("/").rsplit("/", 1)[-1], path=path)
    from training.tiny_policy import build_tiny_policy

    path = build_tiny_policy()
    return services.policy_register(name=f"tiny-{path.name[:8]}", path=str(path))
