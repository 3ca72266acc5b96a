"""The paper's selection rules, as pure functions over scored samples: they propose, never approve.

D_seed (seed round): problems the policy solves only with hints — every baseline sample fails, a
hinted sample is correct with at least one code call that ran without error, and no repetitive
pattern. D_START (RFT round): correct samples with no repetition, at most one per problem.
Where a problem has several eligible samples, the rule keeps the one with the fewest flags, then
the shortest text, then the lowest id (so a selection is reproducible).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

REPETITION = "repetition"  # the flag kind (curation.checks) that disqualifies a sample


@dataclass(frozen=True)
class Sample:
    """What the rules need to know about one trajectory."""

    id: int
    problem_id: int
    hinted: bool
    correct: bool | None
    clean_tool_calls: int  # code calls that ran without an error, a limit or a cut
    flag_kinds: tuple[str, ...]  # warnings and errors; info-level flags (hints) do not count
    length: int

    @property
    def repetitive(self) -> bool:
        return REPETITION in self.flag_kinds


@dataclass
class Selection:
    rule: str
    params: dict
    funnel: list[dict] = field(default_factory=list)  # [{"step": ..., "count": ...}], in order
    chosen: list[int] = field(default_factory=list)  # trajectory ids

    def step(self, name: str, count: int) -> None:
        self.funnel.append({"step": name, "count": count})

    def as_dict(self) -> dict:
        return asdict(self)


def _best(samples: Iterable[Sample]) -> Sample:
    return min(samples, key=lambda s: (len(s.flag_kinds), s.length, s.id))


def _by_problem(samples: Iterable[Sample]) -> dict[int, list[Sample]]:
    grouped: dict[int, list[Sample]] = defaultdict(list)
    for sample in samples:
        grouped[sample.problem_id].append(sample)
    return grouped


def select_seed(samples: Iterable[Sample], *, drop_repetitive: bool = True) -> Selection:
    """D_seed candidates: problems solved only with hints, one clean hinted sample each."""
    selection = Selection(rule="d_seed", params={"drop_repetitive": drop_repetitive})
    problems = _by_problem(samples)
    selection.step("problems sampled", len(problems))

    eligible: dict[int, list[Sample]] = {}
    for problem_id, group in problems.items():
        baseline = [s for s in group if not s.hinted]
        if baseline and not any(s.correct for s in baseline):
            eligible[problem_id] = [s for s in group if s.hinted]
    selection.step("baseline samples all fail", len(eligible))

    eligible = {p: [s for s in g if s.correct] for p, g in eligible.items()}
    eligible = {p: g for p, g in eligible.items() if g}
    selection.step("a hinted sample is correct", len(eligible))

    eligible = {p: [s for s in g if s.clean_tool_calls > 0] for p, g in eligible.items()}
    eligible = {p: g for p, g in eligible.items() if g}
    selection.step("with a code call that ran without error", len(eligible))

    if drop_repetitive:
        eligible = {p: [s for s in g if not s.repetitive] for p, g in eligible.items()}
        eligible = {p: g for p, g in eligible.items() if g}
        selection.step("no repetitive pattern", len(eligible))

    selection.chosen = sorted(_best(group).id for group in eligible.values())
    selection.step("candidates (one per problem)", len(selection.chosen))
    return selection


def select_start(samples: Iterable[Sample], *, drop_repetitive: bool = True) -> Selection:
    """D_START candidates: correct, non-repetitive samples, at most one per problem."""
    selection = Selection(rule="d_start", params={"drop_repetitive": drop_repetitive})
    samples = list(samples)
    selection.step("samples", len(samples))
    kept = [s for s in samples if s.correct]
    selection.step("correct", len(kept))
    if drop_repetitive:
        kept = [s for s in kept if not s.repetitive]
        selection.step("no repetitive pattern", len(kept))
    selection.chosen = sorted(_best(group).id for group in _by_problem(kept).values())
    selection.step("candidates (one per problem)", len(selection.chosen))
    return selection
