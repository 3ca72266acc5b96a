"""Roles as Django groups: annotators review and edit; curators also freeze datasets and launch.

Views check permissions (`user.has_perm("curation.review_trajectory")`), never group names, so an
admin can grant a single permission to anyone.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, Group, Permission

from curation.audit import audit_record
from curation.models import AuditAction, AuditEvent

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
    "view_comment",
    "add_comment",
    "view_suggestion",
]
CURATOR_PERMISSIONS = [
    *ANNOTATOR_PERMISSIONS,
    "take_over_claim",
    "bulk_review_trajectory",
    "adjudicate_trajectory",
    "view_review",
    "view_assignment",
    "add_assignment",
    "add_suggestion",
    "change_dataset",
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
    "view_auditevent",
]


def sync_roles(**_kwargs) -> None:
    """Create or update the two groups; runs after every `migrate`."""
    for name, codenames in ((ANNOTATOR, ANNOTATOR_PERMISSIONS), (CURATOR, CURATOR_PERMISSIONS)):
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.set(
            Permission.objects.filter(content_type__app_label="curation", codename__in=codenames)
        )


def _codenames(permissions) -> list[str]:
    rows = permissions.values_list("content_type__app_label", "codename")
    return sorted(f"{app}.{codename}" for app, codename in rows)


def roles_snapshot(*, holder: AbstractBaseUser | Group) -> dict[str, Any]:
    """What a user or a group may do: a group's permissions; a user's groups, own permissions,
    and staff and superuser flags."""
    if isinstance(holder, Group):
        return {"permissions": _codenames(holder.permissions)}
    return {
        "groups": sorted(holder.groups.values_list("name", flat=True)),
        "permissions": _codenames(holder.user_permissions),
        "is_staff": holder.is_staff,
        "is_superuser": holder.is_superuser,
    }


def roles_change_record(
    *, holder: AbstractBaseUser | Group, before: dict[str, Any] | None, actor
) -> AuditEvent | None:
    """Record that a user's or a group's roles changed since `before` (a `roles_snapshot` taken
    before the change, None for a new holder), in the transaction that saved the change.

    Nothing is recorded when they did not change, or when a new holder was granted nothing.
    """
    after = roles_snapshot(holder=holder)
    if after == before or (before is None and not any(after.values())):
        return None
    return audit_record(
        actor=actor, action=AuditAction.ROLE_CHANGED, target=holder, before=before, after=after
    )
