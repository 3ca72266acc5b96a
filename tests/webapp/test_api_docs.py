"""The rendered API docs: Swagger UI served from this app's static files, linked from the header."""

import re

import pytest
from django.contrib.staticfiles import finders

from tests.webapp import workbench_data as data

pytestmark = pytest.mark.django_db


def test_the_docs_page_loads_swagger_ui_from_this_site_only(client):
    client.force_login(data.annotator())
    page = client.get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "<script>" not in html and "<style>" not in html  # nothing inline for the CSP to block
    urls = re.findall(r'(?:src|href)="([^"]+)"', html)
    scripts = re.findall(r'<script src="([^"]+)"', html)
    assert len(scripts) == 3 and all(not u.startswith(("http:", "https:", "//")) for u in urls)
    for url in urls:
        if url.startswith("/static/"):
            assert finders.find(url.removeprefix("/static/")), f"{url} is not a static file"
    assert "script-src 'self'" in page["Content-Security-Policy"]

    init = client.get(scripts[-1])
    assert init.status_code == 200 and init["Content-Type"].startswith("application/javascript")
    assert 'url: "/api/schema/"' in init.content.decode()


def test_the_workbench_header_links_the_docs(client):
    client.force_login(data.annotator())
    assert b'href="/api/docs/"' in client.get("/").content
