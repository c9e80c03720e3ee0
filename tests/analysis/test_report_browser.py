"""The decision-support report in a real browser (Debian Chromium via Playwright), opened from file:// with every
non-local request aborted: it must need nothing from the network, log no error, draw its Chinese text in the
embedded face, draw the district and grid polygons as SVG paths, and keep legends out of the plots."""
from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from govlake.analysis import report
from govlake.analysis.fonts import FAMILY
from tests.analysis import report_fixtures as fx
from tests.browser import nonblank_fraction, offline_page

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


def _overlap(a: dict, b: dict) -> bool:
    return a["x"] < b["x"] + b["width"] and b["x"] < a["x"] + a["width"] \
        and a["y"] < b["y"] + b["height"] and b["y"] < a["y"] + a["height"]


@contextmanager
def _served(folder: Path) -> Iterator[str]:
    """``folder`` over http on 127.0.0.1 at a port the OS picks free (port 0): never one another program owns."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/index.html"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report")
    return report.build_report(fx.tables(), fx.district_geojson(), out, fx.DAY, grid_geojson=fx.grid_geojson())


@pytest.mark.parametrize("scheme", ["file", "http"])
def test_report_renders_offline(browser, built, scheme):
    with _served(built.parent) as http_url, offline_page(browser, width=1280, height=900) as p:
        p.page.goto(built.as_uri() if scheme == "file" else http_url, wait_until="load")
        p.page.wait_for_function("document.querySelectorAll('#govlake-hotspots .choroplethlocation').length > 0",
                                 timeout=30000)
        p.page.evaluate("document.fonts.ready.then(() => true)")
        text = p.page.inner_text("body")
        faces = p.page.evaluate("Array.from(document.fonts).map(f => [f.family.replace(/\"/g, ''), f.status])")
        uses_face = p.page.evaluate(f"document.fonts.check('16px \"{FAMILY}\"', '石家庄市人口')")
        svg_font = p.page.evaluate("getComputedStyle(document.querySelector('#govlake-pyramid .gtitle')).fontFamily")
        paths = {div: p.page.evaluate(f"document.querySelectorAll('#{div} path.choroplethlocation').length")
                 for div in ("govlake-map", "govlake-hotspots")}
        pyramid_ticks = p.page.evaluate(
            "Array.from(document.querySelectorAll('#govlake-pyramid .ytick text')).map(t => t.textContent)")
        legend_clear = {}
        for div in ("govlake-pyramid", "govlake-weekly", "govlake-dependency"):
            legend = p.page.locator(f"#{div} g.legend").bounding_box()
            plot = p.page.locator(f"#{div} .nsewdrag").first.bounding_box()
            xtitle = p.page.locator(f"#{div} .g-xtitle").bounding_box()
            legend_clear[div] = not _overlap(legend, plot) and not _overlap(legend, xtitle)
        png = p.page.screenshot(full_page=True)
        map_png = p.page.locator("#govlake-map").screenshot()
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / f"report_offline_{scheme}.png").write_bytes(png)
        (ARTIFACTS / f"report_offline_{scheme}_map.png").write_bytes(map_png)
        blocked, errors = list(p.blocked), list(p.errors)

    assert blocked == []
    assert errors == []
    assert "石家庄市人口结构与网格事件决策参考" in text and "网格员 Grid workers" in text
    assert [FAMILY, "loaded"] in faces and uses_face is True
    assert FAMILY in svg_font
    assert paths == {"govlake-map": 3, "govlake-hotspots": 3 + 1}  # 3 districts with data; 3 grids + 1 outline
    assert pyramid_ticks[:2] == ["00-04", "05-09"] and pyramid_ticks[-1] == "85+"
    assert legend_clear == {"govlake-pyramid": True, "govlake-weekly": True, "govlake-dependency": True}
    assert nonblank_fraction(png) > 0.05
    assert nonblank_fraction(map_png) > 0.1  # the polygons cover ~18 % of the map
