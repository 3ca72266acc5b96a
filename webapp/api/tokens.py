"""API tokens: one per user, sent as `Authorization: Token <key>` by scripts that pull datasets."""

from __future__ import annotations

from django.db import transaction
from rest_framework.authtoken.models import Token

from curation.audit import audit_record
from curation.models import AuditAction


def api_token_create(*, token: Token, actor) -> Token:
    """Save a new token for `token.user`, and record who created it.

    The audit event names the token's user, never its key: the log must hold no credentials.
    """
    with transaction.atomic():
        token.save()
        audit_record(
            actor=actor,
            action=AuditAction.EXPORT_TOKEN_CREATED,
            target=token.user,
            after={"user": token.user.get_username()},
        )
    return token
