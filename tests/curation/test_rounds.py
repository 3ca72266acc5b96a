"""Rounds take their hints from the hint library as it was at launch."""

import pytest

from curation import services
from curation.hints import HINTS, HintConfig
from curation.models import HintTemplate
from tests.factories import PolicyFactory, ProblemFactory

pytestmark = pytest.mark.django_db

ADDED = "Let me make sure with a short program.```python"


def new_round(name="r", **options):
    problem = ProblemFactory()
    return services.round_create(
        name=name,
        kind="seed",
        policy=PolicyFactory(),
        problem_sets=[problem.problem_set],
        **options,
    )


def launched(round_):
    return services.round_launch(round=round_, chunk_size=8)


def test_a_hint_added_in_the_admin_is_snapshotted_at_launch_with_its_exact_text():
    HintTemplate.objects.create(name="check_by_program", domain="math", text=ADDED)
    round_ = launched(new_round(hint_config={"hints": ["check_by_program"]}))
    config = HintConfig.from_dict(round_.hint_config)
    assert [(h.name, h.text) for h in config.library] == [("check_by_program", ADDED)]


def test_later_edits_of_a_template_never_change_what_a_launched_round_uses():
    template = HintTemplate.objects.get(name=HINTS[0].name)
    template.text = "Rephrased: I could check this in Python.```python"
    template.save()
    round_ = launched(new_round())
    template.text = "Rephrased again.```python"
    template.save()
    round_.refresh_from_db()
    services.round_cancel(round=round_)
    round_ = launched(round_)  # launched again: the snapshot stands
    texts = {h.name: h.text for h in HintConfig.from_dict(round_.hint_config).library}
    assert texts[HINTS[0].name] == "Rephrased: I could check this in Python.```python"


def test_a_disabled_template_is_never_used_and_does_not_break_default_hints():
    HintTemplate.objects.filter(name=HINTS[0].name).update(enabled=False)
    round_ = launched(new_round())  # default hints: the enabled templates
    config = HintConfig.from_dict(round_.hint_config)
    assert HINTS[0].name not in config.hints
    assert HINTS[0].name not in [h.name for h in config.library]
    assert len(config.library) == len(HINTS) - 1


def test_a_round_naming_a_template_disabled_since_is_refused_at_launch():
    round_ = new_round(hint_config={"hints": [HINTS[0].name]})
    HintTemplate.objects.filter(name=HINTS[0].name).update(enabled=False)
    with pytest.raises(services.ConflictError, match=HINTS[0].name):
        launched(round_)


def test_a_hint_template_must_open_a_python_block():
    template = HintTemplate(name="bad", domain="math", text="Let me check with Python.")
    with pytest.raises(Exception, match=r"must end by opening a ```python block"):
        template.full_clean()


def test_a_policy_path_no_host_can_read_is_refused_at_launch(tmp_path):
    # Policies live on the shared volume: a path this host cannot read, no engine host can.
    missing = PolicyFactory(name="gone", path=str(tmp_path / "sft-job-9" / "model"))
    round_ = services.round_create(
        name="r-gone", kind="seed", policy=missing, problem_sets=[ProblemFactory().problem_set]
    )
    with pytest.raises(services.ConflictError, match=r"policy 'gone': .*sft-job-9/model cannot"):
        launched(round_)
    round_.refresh_from_db()
    assert round_.status == "draft" and not round_.chunks.exists()
    # A directory with its config.json launches; a hub id is the engine's to fetch.
    (tmp_path / "sft-job-9" / "model").mkdir(parents=True)
    (tmp_path / "sft-job-9" / "model" / "config.json").write_text("{}")
    assert launched(round_).status == "queued"
    assert launched(new_round(name="hub")).policy.path == "start-curation/tiny"
