"""Users and trajectories for the workbench tests (plain functions: each test module picks)."""

from __future__ import annotations

from django.contrib.auth.models import Group, Permission

from curation.models import Candidate, Domain, Trajectory
from curation.roles import ANNOTATOR, CURATOR
from curation.services import trajectory_score
from tests.factories import ProblemFactory, RoundFactory, TrajectoryFactory, UserFactory

PASSWORD = "pw-for-tests"
HINT = "I can use Python to perform complex calculations for this problem.```python"

# A hinted math trajectory: a cell with its output, a cell with a placeholder, two spellings of
# one variable (`total_sum` / `totl_sum`), and a final answer.
SAMPLE_TEXT = (
    "<think>\nWe need the sum of the squares of 1..10. Wait, "
    "I can use Python to perform complex calculations for this problem.```python\n"
    "total_sum = sum(i * i for i in range(1, 11))\n"
    "print(total_sum)\n"
    "```\n"
    "```output\n385\n```\n"
    "So the sum is 385. Let me double check with a loop.\n"
    "```python\n"
    "totl_sum = 0\n"
    "for i in range(1, 11):\n"
    "    totl_sum += i * i\n"
    "def check(value):\n"
    "    ...\n"
    "print(totl_sum)  # totl_sum should match\n"
    "```\n"
    "```output\n385\n```\n"
    "Both agree.\n"
    "</think>\n\n"
    "The answer is \\boxed{385}."
)

XSS_TEXT = (
    "<think>\n<script>window.__xss = 1; alert('think')</script> "
    '<img src=x onerror="window.__xss = 2; alert(1)"> '
    '<a href="javascript:alert(3)">click me</a> {{ 7*7 }} ```python\n'
    "print('<script>alert(4)</script>')  # <img src=x onerror=alert(5)>\n"
    "```\n"
    "```output\n<script>alert(6)</script>\n<svg onload=alert(7)>\n```\n"
    "</think>\n\nThe answer is \\boxed{<b onmouseover=alert(8)>42</b>}."
)


def annotator(username: str = "ann"):
    user = UserFactory(username=username)
    user.groups.add(Group.objects.get(name=ANNOTATOR))
    return user


def curator(username: str = "cy"):
    user = UserFactory(username=username)
    user.groups.add(Group.objects.get(name=CURATOR))
    return user


def viewer(username: str = "viewer"):
    """May look at trajectories, not review or change them."""
    user = UserFactory(username=username)
    user.user_permissions.add(
        Permission.objects.get(content_type__app_label="curation", codename="view_trajectory")
    )
    return user


def candidate(text: str = SAMPLE_TEXT, *, round=None, problem=None, **fields) -> Trajectory:
    """A scored D_seed candidate of a math problem whose answer is 385."""
    problem = problem or ProblemFactory(domain=Domain.MATH, answer="385", prompt="Sum of 1²..10²?")
    fields.setdefault("hints", [HINT])
    fields.setdefault("candidate", Candidate.SEED)
    trajectory = TrajectoryFactory(
        round=round or RoundFactory(),
        problem=problem,
        text=text,
        original_text=text,
        num_tokens=len(text) // 4,
        **fields,
    )
    return trajectory_score(trajectory=trajectory)
