"""The paper's ablations as round options: which samples run their code (tools off for the
greedy base or for a whole RFT control round), validated once by services.round_settings."""

import pytest

from curation import services
from curation.models import Round
from tests.factories import PolicyFactory, ProblemFactory
from workers.rounds import tool_config

pytestmark = pytest.mark.django_db


def _round(**tools) -> Round:
    problem = ProblemFactory()
    return services.round_create(
        name="r",
        kind="seed",
        policy=PolicyFactory(),
        problem_sets=[problem.problem_set],
        tool_config=tools,
    )


@pytest.mark.parametrize(
    ("run_code", "runs_plain", "runs_hinted"),
    [(None, True, True), ("all", True, True), ("hinted", False, True), ("none", False, False)],
)
def test_run_code_decides_which_samples_run_their_code(run_code, runs_plain, runs_hinted):
    round_ = _round(**({} if run_code is None else {"run_code": run_code}))
    tools = tool_config(round_)
    assert (tools is not None) == runs_hinted
    assert (tools is not None and tools.plain_samples) == runs_plain


def test_an_unknown_run_code_is_refused_naming_the_choices():
    with pytest.raises(services.SettingError, match="run_code: must be one of") as info:
        services.round_settings(kind="rft", tool_config={"run_code": "sometimes"})
    assert info.value.field == "run_code" and "'hinted'" in str(info.value)
