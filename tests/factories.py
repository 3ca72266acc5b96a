"""factory_boy factories for the domain models."""

import factory
from django.contrib.auth import get_user_model

from curation import models


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ["username"]

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.PostGenerationMethodCall("set_password", "pw-for-tests")


class ProblemSetFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.ProblemSet

    name = factory.Sequence(lambda n: f"set-{n}")


class ProblemFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Problem

    problem_set = factory.SubFactory(ProblemSetFactory)
    external_id = factory.Sequence(lambda n: f"p{n}")
    domain = models.Domain.MATH
    prompt = factory.Sequence(lambda n: f"What is {n} + {n}?")
    answer = factory.Sequence(lambda n: str(2 * n))


class PolicyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Policy

    name = factory.Sequence(lambda n: f"policy-{n}")
    path = "start-curation/tiny"  # a hub id: launches do not look for it on disk


class RoundFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Round

    name = factory.Sequence(lambda n: f"round-{n}")
    kind = models.RoundKind.SEED
    policy = factory.SubFactory(PolicyFactory)


class TrajectoryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Trajectory

    round = factory.SubFactory(RoundFactory)
    problem = factory.SubFactory(ProblemFactory)
    hinted = True
    sample_index = factory.Sequence(int)
    text = "<think>\nThe sum is easy.\n</think>\n\nThe answer is \\boxed{2}."
    original_text = factory.SelfAttribute("text")
    finish_reason = "stop"


def eval_round(policy, problems, *, end_repeats=None, correct=1, **settings) -> models.Round:
    """An eval round with one scored sample per problem, the first `correct` of them right:
    plain, or hinted with `end_repeats` end-of-thinking hints (a sweep's round)."""
    hinted = end_repeats is not None
    round_ = RoundFactory(
        kind=models.RoundKind.EVAL,
        policy=policy,
        samples_hinted=1 if hinted else 0,
        samples_plain=0 if hinted else 1,
        hint_config={"end_repeats": end_repeats} if hinted else {},
        **settings,
    )
    for index, problem in enumerate(problems):
        TrajectoryFactory(
            round=round_,
            problem=problem,
            hinted=hinted,
            sample_index=0,
            is_correct=index < correct,
            num_tool_calls=1 if hinted else 0,
            num_tokens=100,
        )
    return round_
