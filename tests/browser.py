"""Headless Chromium for the browser tests: Debian's ``/usr/bin/chromium`` driven by Playwright.

``offline_page`` opens a page with the network cut: every request that is not ``file://``, ``data:``,
``blob:`` or to a loopback address is aborted and recorded, so a page that needs a CDN fails its test.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlparse

import pytest

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}


def chromium_path() -> str | None:
    """The Chromium binary (``GOVLAKE_CHROMIUM`` or Debian's ``chromium``), or None when not installed."""
    return os.environ.get("GOVLAKE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def _is_local(url: str) -> bool:
    parsed = urlparse(url)
    if parsed.scheme in ("file", "data", "blob", "about"):
        return True
    return parsed.hostname in LOOPBACK_HOSTS


class OfflinePage:
    """A Playwright page plus the requests it tried to send off the machine (``blocked``) and its console errors."""

    def __init__(self, page) -> None:
        self.page = page
        self.blocked: list[str] = []
        self.errors: list[str] = []


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for the session; in CI a missing Chromium is an error, elsewhere a skip."""
    path = chromium_path()
    if not path:
        if os.environ.get("CI"):
            pytest.fail("chromium not installed: docker/setup.sh --servers installs it")
        pytest.skip("chromium not installed (docker/setup.sh --servers installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=path, headless=True,
                                      args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        yield instance
        instance.close()


@contextmanager
def offline_page(browser, width: int = 1280, height: int = 900) -> Iterator[OfflinePage]:
    """A fresh page whose non-local requests are aborted (and listed in ``.blocked``)."""
    context = browser.new_context(viewport={"width": width, "height": height}, locale="zh-CN",
                                  timezone_id="Asia/Shanghai")
    page = context.new_page()
    result = OfflinePage(page)

    def route(r):
        if _is_local(r.request.url):
            r.continue_()
        else:
            result.blocked.append(r.request.url)
            r.abort()

    context.route("**/*", route)
    page.on("console", lambda m: result.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: result.errors.append(str(e)))
    try:
        yield result
    finally:
        context.close()


def nonblank_fraction(png: bytes) -> float:
    """Share of pixels (0–1) in a PNG screenshot that differ from its most common colour (the background)."""
    import io
    from collections import Counter

    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB").resize((320, 200))
    pixels = list(image.getdata())
    background, count = Counter(pixels).most_common(1)[0]
    return 1 - count / len(pixels)
