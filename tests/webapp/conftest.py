"""Fixtures for the browser suites: Debian's Chromium driven by Playwright."""

from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
# As root, Chromium needs --no-sandbox; the rest keeps it off this machine's closed network.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    """One Chromium per module. Playwright's sync API runs an event loop in the test's thread,
    which makes Django's ORM calls there look async-unsafe: they are not, so allow them while it
    runs (and only then)."""
    from playwright.sync_api import expect, sync_playwright

    # The first sandbox call of a server process starts its warm interpreters: allow for it,
    # and for a loaded machine, rather than fail on Playwright's 5 s default.
    expect.set_options(timeout=30_000)

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium package")
    with pytest.MonkeyPatch.context() as patch, sync_playwright() as playwright:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
