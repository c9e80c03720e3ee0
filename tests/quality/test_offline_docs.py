"""Data Docs offline (govlake.quality.offline_docs) and the quarantine extracts they link (govlake.quality.
quarantine_pages): a tiny batch validated as the validate stage does it, its site opened in headless Chromium with the
network cut."""
from __future__ import annotations

import datetime as dt
import json

import pytest

from govlake.quality import offline_docs, quarantine_pages
from govlake.quality.rules import count_rules, evaluate, load_suite, save_validation_result, split
from tests.browser import offline_page

DATE = dt.date(2025, 6, 30)
FA_FAMILY = "Font Awesome 6 Free"


@pytest.fixture(scope="module")
def site(spark, tmp_path_factory):
    """A 6-row batch of ``raw.t0`` (key ``id``): ``k`` NULL in rows 2 and 5 (not-null fails: ids p2, p5), ``k``
    'b' in rows 3 and 4 (uniqueness fails for one copy), ``v`` out of range in row 6 (a warn rule: no quarantine).
    Extracts written, result stored, site built: as ``govlake.quality.stage.validate_table`` does."""
    if not all((offline_docs.assets_dir() / p.folder / offline_docs.COMPLETE).is_file()
               for p in offline_docs.PACKAGES):
        pytest.fail("web assets not fetched: python -m govlake.quality.offline_docs fetch (docker/setup.sh does it)")
    tmp = tmp_path_factory.mktemp("docs")
    doc = {"name": "raw.t0", "meta": {"table": "raw.t0", "key_columns": ["id"]}, "expectations": [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "k"},
         "meta": {"rule_id": "t0.k.not_null", "action": "quarantine"}},
        {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "k"},
         "meta": {"rule_id": "t0.k.unique", "action": "quarantine"}},
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "v", "min_value": 0, "max_value": 9},
         "meta": {"rule_id": "t0.v.range", "action": "warn"}},
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "id"},
         "meta": {"rule_id": "t0.id.not_null", "action": "quarantine"}}]}
    (tmp / "suites").mkdir()
    (tmp / "suites" / "raw.t0.json").write_text(json.dumps(doc), encoding="utf-8")
    suite = load_suite("raw.t0", tmp / "suites")
    batch = spark.createDataFrame(
        [("p1", "a", "1", 1), ("p2", None, "2", 2), ("p3", "b", "3", 3), ("p4", "b", "4", 4), ("p5", None, "5", 5),
         ("p6", "c", "60", 6)], "id string, k string, v string, _row_number long")
    evaluated = evaluate(batch, suite).cache()
    _, quarantined = split(evaluated, suite)
    reports = tmp / "reports"
    extracts = quarantine_pages.collect_extracts(quarantined)
    pages = quarantine_pages.write_extracts(reports, "t0", DATE, suite, extracts)
    out = save_validation_result(suite, count_rules(evaluated, suite), f"t0:{DATE}", reports, data_docs=True,
                                 run_time=dt.datetime(2025, 6, 30, 18, 0, tzinfo=dt.UTC))
    evaluated.unpersist()
    index = offline_docs.Path(out["data_docs_index"])
    validation = next((index.parent / "validations").rglob("*.html"))
    return {"reports": reports, "extracts": extracts, "pages": pages, "index": index, "validation": validation}


def test_extracts_hold_each_quarantine_rules_rows(site):
    unique_key = "p4" if site["extracts"]["t0.k.unique"]["rows"][0][0] == "p4" else "p3"  # the copy not kept
    assert {r: (e["total"], [k for k, _, _ in e["rows"]]) for r, e in site["extracts"].items()} == {
        "t0.k.not_null": (2, ["p2", "p5"]), "t0.k.unique": (1, [unique_key])}
    assert [p.relative_to(site["reports"]).as_posix() for p in site["pages"]] == [
        "quarantine/2025-06-30/t0/t0.k.not_null.html", "quarantine/2025-06-30/t0/t0.k.unique.html"]
    assert site["extracts"]["t0.k.not_null"]["rows"][0] == ("p2", 2, "raw.t0.k: t0.k.not_null failed for key p2: "
                                                                     "value '∅'")


def test_a_rerun_with_fewer_failures_removes_stale_pages(site, tmp_path):
    from govlake.quality.rules import Suite

    extracts = {"t0.k.not_null": site["extracts"]["t0.k.not_null"]}
    first = quarantine_pages.write_extracts(tmp_path, "t0", DATE, Suite("raw.t0", "raw.t0", (), (), ""),
                                            site["extracts"])
    assert len(first) == 2
    kept = quarantine_pages.write_extracts(tmp_path, "t0", DATE, Suite("raw.t0", "raw.t0", (), (), ""), extracts)
    assert [p.name for p in kept] == ["t0.k.not_null.html"]
    assert sorted(p.name for p in kept[0].parent.iterdir()) == ["t0.k.not_null.html"]


def test_no_page_of_the_site_names_a_cdn(site):
    root = site["index"].parent
    for path in list(root.rglob("*.html")) + list((root / "static" / "styles").glob("*.css")):
        text = path.read_text(encoding="utf-8")
        for url in offline_docs.CDN_FILES:
            assert url not in text, (path, url)
        assert "amazonaws.com" not in text, path
    assert offline_docs.make_site_offline(root) == 0  # a second pass changes nothing


def _check_icons_and_tables(p, root) -> dict:
    page = p.page
    page.wait_for_selector(".bootstrap-table", state="attached", timeout=15_000)
    figures = page.evaluate(f"""async () => {{
        await document.fonts.ready;
        const icon = document.querySelector('i.fas');
        const faces = [...document.fonts].filter(f => f.family.replace(/"/g, '') === '{FA_FAMILY}');
        return {{
            family: getComputedStyle(icon, '::before').fontFamily,
            loaded: faces.filter(f => f.status === 'loaded').map(f => f.weight),
            check: document.fonts.check('900 16px "{FA_FAMILY}"'),
            glyph: getComputedStyle(icon, '::before').content,
            tables: document.querySelectorAll('div.bootstrap-table').length,
            rows: document.querySelectorAll('div.bootstrap-table tbody tr[data-index]').length,
        }};
    }}""")
    assert FA_FAMILY in figures["family"] and figures["loaded"] == ["900"] and figures["check"] is True
    assert figures["glyph"] not in ("none", "normal", "")
    assert figures["tables"] >= 1 and figures["rows"] >= 1
    return figures


def test_index_and_validation_page_render_offline_and_link_quarantined_rows(site, browser):
    root = site["index"].parent
    fonts: list[str] = []
    with offline_page(browser) as p:
        p.page.on("requestfinished", lambda r: fonts.append(r.url) if r.url.endswith(".woff2") else None)
        p.page.goto(site["index"].as_uri())
        index = _check_icons_and_tables(p, root)
        assert "t0:2025-06-30" in p.page.inner_text("div.bootstrap-table")  # the run, in a row the JS rendered
        assert p.blocked == [] and p.errors == []
    assert fonts and all(u.startswith((root / "static" / "vendor").as_uri()) for u in fonts), fonts
    assert index["rows"] == 2  # one validation result, one suite

    with offline_page(browser) as p:
        p.page.goto(site["validation"].as_uri())
        _check_icons_and_tables(p, root)
        icons = p.page.evaluate("() => [...document.querySelectorAll('i.fas')].map(i => i.className)")
        assert "fas fa-times text-danger" in icons and "fas fa-check-circle text-success" in icons
        links = p.page.evaluate(f"""() => [...document.querySelectorAll('a.{offline_docs.LINK_CLASS}')]
                                   .map(a => [a.dataset.ruleId, a.closest('tr').innerText.includes('null')])""")
        # the failed quarantine rules; not the warn rule (no quarantine), not the passing id rule
        assert sorted(links) == [["t0.k.not_null", True], ["t0.k.unique", False]]
        p.page.click(f'a.{offline_docs.LINK_CLASS}[data-rule-id="t0.k.not_null"]')
        p.page.wait_for_selector("#rows")
        assert p.page.url == site["pages"][0].as_uri()
        keys = p.page.evaluate("() => [...document.querySelectorAll('#rows td.key')].map(td => td.textContent)")
        assert keys == ["p2", "p5"] and p.page.inner_text("#total") == "2"
        assert p.blocked == [] and p.errors == []


def test_a_copy_that_is_not_the_pinned_file_is_refused(site, tmp_path):
    """The template pins Popper's and Bootstrap's scripts by SHA-384: a copy that differs is an error, not a page
    that runs other code than the CDN's."""
    import shutil

    root = tmp_path / "site"
    shutil.copytree(site["index"].parent, root)
    page = root / "index.html"
    copy = root / offline_docs.VENDOR_DIR / "bootstrap@4.3.1/dist/js/bootstrap.min.js"
    tag = ('<script src="https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js" integrity="sha384-'
           'JjSmVgyd0p3pXB1rRibZUAYoIIy6OrQ6VrjIEaFf/nJGzIxFDsf4x0xIM+B07jRM" crossorigin="anonymous"></script>')
    assert offline_docs._local_tag(tag, page, root) == \
        '<script src="static/vendor/bootstrap@4.3.1/dist/js/bootstrap.min.js"></script>'
    copy.write_bytes(copy.read_bytes() + b"\n")
    with pytest.raises(ValueError, match="not the file the template pins"):
        offline_docs._local_tag(tag, page, root)
