"""Middleware of the project's own."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

# Django's technical pages (a traceback) are built with inline scripts, handlers and styles.
_TECHNICAL_PAGE_CSP = {
    "script-src": ["'self'", "'unsafe-inline'"],
    "style-src": ["'self'", "'unsafe-inline'"],
}


class DebugPagesCSPMiddleware:
    """In DEBUG only, relax the Content-Security-Policy for Django's technical error pages so
    their traceback toggles and styles work; every other response keeps the strict policy.

    django-csp already leaves DEBUG's 404 and 500 pages without a policy; the traceback page
    Django shows with status 400 (a BadRequest or SuspiciousOperation the view raised) got the
    strict one. This sits after CSPMiddleware in MIDDLEWARE, so it marks the response before
    the policy is built.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        technical = getattr(request, "_view_exception", None) is not None
        if settings.DEBUG and technical and response.status_code in (400, 500):
            response._csp_replace = _TECHNICAL_PAGE_CSP
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> None:
        request._view_exception = exception
