"""Roles as Django groups: annotators review and edit; curators also freeze datasets and launch.

Views check permissions (`user.has_perm("curation.review_trajectory")`), never group names, so an
admin can grant a single permission to anyone.
"""

from django.contrib.auth.models import Group, Permission

ANNOTATOR = "annotator"
CURATOR = "curator"

ANNOTATOR_PERMISSIONS = [
    "view_problem",
    "view_problemset",
    "view_round",
    "view_trajectory",
    "change_trajectory",
    "review_trajectory",
    "add_revision",
    "view_revision",
    "view_dataset",
    "view_datasetversion",
]
CURATOR_PERMISSIONS = [
    *ANNOTATOR_PERMISSIONS,
    "add_problemset",
    "add_problem",
    "change_problem",
    "view_policy",
    "add_policy",
    "change_policy",
    "add_round",
    "change_round",
    "launch_round",
    "add_dataset",
    "add_datasetversion",
    "view_sftjob",
    "add_sftjob",
    "change_sftjob",
    "view_hinttemplate",
    "change_hinttemplate",
    "add_hinttemplate",
]


def sync_roles(**_kwargs) -> None:
    """Create or update the two groups; runs after every `migrate`."""
    for name, codenames in ((ANNOTATOR, ANNOTATOR_PERMISSIONS), (CURATOR, CURATOR_PERMISSIONS)):
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.set(
            Permission.objects.filter(content_type__app_label="curation", codename__in=codenames)
        )
