"""The demo's status banner (while `make demo` builds its policy) and DEBUG's technical pages
under the Content-Security-Policy."""

import pytest
from django.core.exceptions import SuspiciousOperation
from django.core.management import call_command
from django.test import Client

from curation import demo
from curation.demo import DemoStatus
from tests.webapp import workbench_data as data

pytestmark = pytest.mark.django_db


@pytest.fixture
def status_file(settings, tmp_path):
    settings.DEMO_STATUS_FILE = tmp_path / "status.json"
    return settings.DEMO_STATUS_FILE


def test_the_pages_show_the_policy_build_and_poll_until_the_round_starts(client, status_file):
    client.force_login(data.annotator())
    demo.demo_status_write(path=status_file, status=DemoStatus("building", percent=40))
    page = client.get("/").content.decode()
    assert "building the demo policy… 40 %" in page
    assert 'hx-get="/demo-status/"' in page  # polls while it builds
    banner = client.get("/demo-status/").content.decode()
    assert banner.startswith('<div id="demo-status"') and "40 %" in banner

    demo.demo_status_write(path=status_file, status=DemoStatus("ready", round_id=7))
    banner = client.get("/demo-status/").content.decode()
    assert "first round is running" in banner and "hx-get" not in banner  # polling stops


def test_without_a_demo_there_is_no_banner(client, settings):
    settings.DEMO_STATUS_FILE = None
    client.force_login(data.annotator())
    assert "demo-status" not in client.get("/").content.decode()
    assert client.get("/demo-status/").content.strip() == b""


def test_a_failed_policy_build_is_shown_on_the_pages_and_the_command_fails(
    client, status_file, monkeypatch
):
    def broken(**kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr("training.tiny_policy.build_tiny_policy", broken)
    with pytest.raises(OSError):
        call_command("demo_first_round")
    status = demo.demo_status_read(path=status_file)
    assert (status.stage, status.error) == ("failed", "No space left on device")
    client.force_login(data.annotator())
    page = client.get("/").content.decode()
    assert "could not start its first round: No space left on device" in page


def test_an_unreadable_status_file_is_no_status(tmp_path):
    path = tmp_path / "status.json"
    path.write_text("{half", encoding="utf-8")
    assert demo.demo_status_read(path=path) is None
    assert demo.demo_status_read(path=tmp_path / "missing.json") is None


# --- DEBUG's technical pages ------------------------------------------------------------------


def script_src(response) -> str | None:
    """The policy's script-src (its directives come in no fixed order), None without a policy."""
    header = response.get("Content-Security-Policy")
    if header is None:
        return None
    directives = dict(d.strip().split(" ", 1) for d in header.split(";") if d.strip())
    return directives.get("script-src")


def _broken_queue(monkeypatch, exception):
    def boom(**kwargs):
        raise exception

    monkeypatch.setattr("webapp.ui.views.selectors.queue_count", boom)


def test_in_debug_a_traceback_page_may_run_its_inline_scripts(settings, monkeypatch):
    settings.DEBUG = True
    client = Client(raise_request_exception=False)
    client.force_login(data.annotator())
    _broken_queue(monkeypatch, SuspiciousOperation("a strange request"))
    page = client.get("/")
    assert page.status_code == 400 and b"a strange request" in page.content  # the traceback
    assert script_src(page) == "'self' 'unsafe-inline'"
    assert "object-src 'none'" in page["Content-Security-Policy"]

    _broken_queue(monkeypatch, RuntimeError("the queue broke"))
    page = client.get("/")
    assert page.status_code == 500 and b"the queue broke" in page.content
    assert script_src(page) != "'self'"


def test_every_other_page_keeps_the_strict_policy(settings, monkeypatch):
    settings.DEBUG = True
    client = Client(raise_request_exception=False)
    client.force_login(data.annotator())
    for response in (client.get("/"), client.get("/admin/"), client.get("/api/docs/")):
        assert script_src(response) == "'self'", response

    settings.DEBUG = False  # production: a traceback is never shown, the policy stays strict
    _broken_queue(monkeypatch, SuspiciousOperation("a strange request"))
    page = client.get("/")
    assert page.status_code == 400 and b"a strange request" not in page.content
    assert script_src(page) == "'self'"


def test_the_browsers_favicon_request_finds_the_sites_icon(client):
    from django.contrib.staticfiles import finders

    response = client.get("/favicon.ico")
    assert response.status_code == 301 and response["Location"].endswith("ui/favicon.svg")
    assert finders.find("ui/favicon.svg")
