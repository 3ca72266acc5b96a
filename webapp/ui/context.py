"""Template context for every workbench page."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest

from curation.demo import demo_status_read


def demo_status(request: HttpRequest) -> dict[str, Any]:
    """While `make demo` gets ready, its status ("building the demo policy… 40 %")."""
    path = settings.DEMO_STATUS_FILE
    return {"demo_status": demo_status_read(path=path) if path is not None else None}
