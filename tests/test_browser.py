"""The browser harness itself: offline pages abort and list requests that leave the machine."""
from __future__ import annotations

from tests.browser import _is_local, nonblank_fraction, offline_page


def test_is_local_accepts_only_files_and_loopback():
    assert _is_local("file:///tmp/x.html")
    assert _is_local("http://127.0.0.1:8000/a")
    assert _is_local("http://localhost/a")
    assert not _is_local("https://cdn.plot.ly/plotly.min.js")
    assert not _is_local("http://10.0.0.1/a")


def test_offline_page_blocks_a_cdn_script_and_renders_local_content(browser, tmp_path):
    page_file = tmp_path / "p.html"
    page_file.write_text('<html><body style="background:#fff"><h1>报表</h1>'
                         '<div style="width:300px;height:300px;background:#c00"></div>'
                         '<script src="https://cdn.example.org/x.js"></script></body></html>', encoding="utf-8")
    with offline_page(browser) as p:
        p.page.goto(page_file.as_uri())
        assert p.page.inner_text("h1") == "报表"
        assert p.blocked == ["https://cdn.example.org/x.js"]
        assert nonblank_fraction(p.page.screenshot()) > 0.05  # the 300×300 block is 7.8 % of the 1280×900 page
