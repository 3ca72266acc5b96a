"""The audit log of curator and admin actions: who froze, launched, cancelled, registered,
edited or granted what, and when.

The services that perform those actions call `audit_record` inside their own transaction, so an
event commits, or rolls back, with the change it describes.
"""

from __future__ import annotations

from typing import Any

from django.db import models

from curation.models import AuditAction, AuditEvent


def audit_record(
    *,
    actor: Any,
    action: AuditAction,
    target: models.Model,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditEvent:
    """Record one action on `target`; `actor` is the user who acted, None for a script."""
    if actor is not None and not actor.is_authenticated:
        actor = None
    return AuditEvent.objects.create(
        actor=actor,
        action=action,
        target_type=target._meta.label_lower,
        target_id=str(target.pk),
        target_repr=str(target)[:200],
        before=before,
        after=after,
    )
