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
