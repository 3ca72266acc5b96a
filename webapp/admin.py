"""The API's tokens in the admin: created through `api_token_create`, so each is audited."""

from django.contrib import admin
from django.http import HttpRequest
from rest_framework.authtoken.admin import TokenAdmin
from rest_framework.authtoken.models import TokenProxy

from webapp.api.tokens import api_token_create

admin.site.unregister(TokenProxy)


@admin.register(TokenProxy)
class AuditedTokenAdmin(TokenAdmin):
    def save_model(self, request: HttpRequest, obj: TokenProxy, form, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
        else:
            api_token_create(token=obj, actor=request.user)
