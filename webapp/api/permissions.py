"""Permissions by role: each view names, per action, the one `curation.<codename>` it requires.

Roles are groups of model permissions (`curation.roles`); checking permissions rather than group
names lets an admin grant a single right to anyone, e.g. `view_datasetversion` to a trainer's
script account.
"""

from __future__ import annotations

from rest_framework.permissions import BasePermission


class ActionPermission(BasePermission):
    """Allow an authenticated user who holds the codename `view.action_permissions[action]`.

    An action missing from the map is refused, so a new action is closed until it is named.
    Anonymous requests are refused before the map is read: DRF answers them 401, others 403.
    """

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        action = getattr(view, "action", None) or ""
        if action == "metadata":  # OPTIONS describes the endpoint; any signed-in user may ask
            return True
        codename = view.action_permissions.get(action)
        return bool(codename) and user.has_perm(f"curation.{codename}")
