"""The curators' console, included at /console/ as namespace "console"."""

from django.urls import path

from webapp.ui import console

app_name = "console"

urlpatterns = [
    path("", console.home, name="home"),
    path("problem-sets/", console.problem_sets, name="problem_sets"),
    path("rounds/", console.rounds, name="rounds"),
    path("rounds/new/", console.round_new, name="round_new"),
    path("rounds/<int:pk>/", console.round_detail, name="round"),
    *(
        path(
            f"rounds/<int:pk>/{action}/",
            console.round_run,
            {"action": action},
            name=f"round_{action}",
        )
        for action in ("launch", "cancel", "rerun")
    ),
    path("datasets/", console.datasets, name="datasets"),
    path("datasets/<int:pk>/", console.dataset_detail, name="dataset"),
    path(
        "datasets/<int:pk>/select/<int:round_pk>/",
        console.dataset_select,
        name="dataset_select",
    ),
    path("datasets/<int:pk>/freeze/", console.dataset_freeze, name="dataset_freeze"),
    path("jobs/", console.jobs, name="jobs"),
    path("jobs/new/", console.job_new, name="job_new"),
    path("jobs/<int:pk>/", console.job_detail, name="job"),
    *(
        path(f"jobs/<int:pk>/{action}/", console.job_run, {"action": action}, name=f"job_{action}")
        for action in ("cancel", "rerun")
    ),
    path("policies/", console.policies, name="policies"),
    path("evaluation/", console.evaluation, name="evaluation"),
    path("evaluation/sweep/", console.sweep, name="sweep"),
]
