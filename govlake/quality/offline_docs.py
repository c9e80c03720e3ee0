"""Self-contained Great Expectations Data Docs: the site's pages load no script, style, font or image from the
network, and each failed quarantine rule on a validation page links to its quarantined rows.

GX 1.24's page templates (``great_expectations/render/view/templates``: ``page.j2``, ``index_page.j2``,
``page_minimal.j2``, ``js_script_imports.j2``, ``top_navbar.j2``) load jQuery, Popper, Bootstrap, bootstrap-table,
bootstrap-datepicker, Font Awesome, bootstrap-dark and Vega from CDNs, and the GX logo from S3: offline (an air-gapped
government network) the index shows no table (bootstrap-table never runs) and no pass/fail icon.

* :func:`fetch_assets` (``python -m govlake.quality.offline_docs fetch [DEST]``, run by ``docker/setup.sh``): the npm
  packages of :data:`PACKAGES` at the versions the templates name (``vega@5`` & co. pinned to one release of that
  major) through the npm client (``npm pack``), each tarball's SHA-512 checked against the integrity pinned here
  (the registry's ``dist.integrity``), the files the pages use unpacked into ``.cache/web/<name>@<version>/``
  (``GOVLAKE_WEB_ASSETS``).
* :func:`make_site_offline` (after every Data Docs build, ``govlake.quality.rules``): those files copied into the
  site (``static/vendor/<name>@<version>/``), every page's CDN address replaced by the relative path of the copy
  (``integrity``/``crossorigin`` dropped: Chromium refuses CORS for ``file://``; the copy's SHA-384 is checked
  against the template's ``integrity`` instead), the S3 logo by GX's own copy under ``static/images``, and on each
  validation page the failed expectations whose quarantine extract exists
  (``<reports>/quarantine/<date>/<table>/<rule_id>.html``, :mod:`govlake.quality.quarantine_pages`) get a link to it.

Files are written through :mod:`govlake.core.fsio` (atomic, unchanged files left alone).
"""
from __future__ import annotations

import base64
import hashlib
import html
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from govlake.core import fsio
from govlake.core.config import REPO_ROOT

logger = logging.getLogger(__name__)

#: Environment variable: folder of the fetched web assets (default ``<repo>/.cache/web``).
ASSETS_ENV = "GOVLAKE_WEB_ASSETS"
#: Folder of the site where the assets are copied.
VENDOR_DIR = "static/vendor"
#: Marker file of a fully unpacked package (holds its integrity).
COMPLETE = ".complete"
#: Quarantine extracts, under the reports folder: ``quarantine/<date>/<table>/<rule_id>.html``.
QUARANTINE_DIR = "quarantine"
#: Class of the link added to a validation page's expectation row.
LINK_CLASS = "govlake-quarantine-link"
#: Put into the ``<head>`` of a page once it is self-contained: later calls skip it.
MARKER = '<meta name="govlake-offline-docs" content="1">'


@dataclass(frozen=True)
class Package:
    """An npm package version, its tarball's integrity (``sha512-<base64>``, the registry's ``dist.integrity``) and
    the files (or folders, ending in ``/``) the Data Docs pages use, relative to the package root."""

    name: str
    version: str
    integrity: str
    files: tuple[str, ...]

    @property
    def folder(self) -> str:
        """``<name>@<version>`` (a scoped name keeps its ``@scope/`` folder)."""
        return f"{self.name}@{self.version}"


#: The packages GX 1.24.1's templates load; ``vega@5``, ``vega-lite@5``, ``vega-embed@6`` (jsDelivr resolves the
#: newest of that major) pinned to the newest on 2026-12-05.
PACKAGES = (
    Package("jquery", "3.7.1",
            "sha512-m4avr8yL8kmFN8psrbFFFmB/If14iN5o9nw/NgnnM+kybDJpRsAynV2BsfpTYrTRysYUdADVD7CkUUizgkpLfg==",
            ("dist/jquery.min.js",)),
    Package("popper.js", "1.12.9",
            "sha512-s0EEi9xiSCdqz9lV4IiVH5yIZnDX/U1t0tCjB+0jXx9jW8lrR7kOpVupiUg175ogqVoudpDXHF1p6dKATCHMeg==",
            ("dist/umd/popper.min.js",)),
    Package("bootstrap", "4.3.1",
            "sha512-rXqOmH1VilAt2DyPzluTi2blhk17bO7ef+zLLPlWvG494pDxcM234pJ8wTc/6R40UWizAIIMgxjvxZg5kmsbag==",
            ("dist/js/bootstrap.min.js", "dist/css/bootstrap.min.css")),
    Package("bootstrap-table", "1.19.1",
            "sha512-WvV+l1AI/C+zThaKmfHmi/IuayVNB0qdFyEhFx1jyZhO0oLtNJNANkCR3rvJf6Dkh72dsLElxpE/bzK9seEQLA==",
            ("dist/bootstrap-table.min.js", "dist/bootstrap-table.min.css",
             "dist/extensions/filter-control/bootstrap-table-filter-control.min.js")),
    Package("bootstrap-table", "1.19.0",
            "sha512-L+USHm3X9FKocx/6yngGu12yF6r6s1Ntuc+hoIK2a2QQJjHw5kcySLiE2HY/9sEaSGAOfPbfQOtBH3uKkcpqEA==",
            ("dist/extensions/filter-control/bootstrap-table-filter-control.css",
             "dist/extensions/filter-control/bootstrap-table-filter-control.min.css")),
    Package("bootstrap-datepicker", "1.9.0",
            "sha512-9rYYbaVOheGYxjOr/+bJCmRPihfy+LkLSg4fIFMT9Od8WwWB/MB50w0JO1eBgKUMbb7PFHQD5uAfI3ArAxZRXA==",
            ("dist/js/bootstrap-datepicker.min.js", "dist/css/bootstrap-datepicker.min.css")),
    Package("@fortawesome/fontawesome-free", "6.6.0",
            "sha512-60G28ke/sXdtS9KZCpZSHHkCbdsOGEhIUGlwq6yhY74UpTiToIh8np7A8yphhM4BWsvNFtIvLpi4co+h9Mr9Ow==",
            ("css/all.min.css", "webfonts/")),
    Package("@forevolve/bootstrap-dark", "1.1.0",
            "sha512-A3ucpEpxPoTVO490lZZCfjPXxv832l7mm1IxX3bXyxvgwnPGXDLyh7dWrphXKO8YBAu3EswbBEu3VSW8NRMW3A==",
            ("dist/css/bootstrap-prefers-dark.css",)),
    Package("vega", "5.33.1",
            "sha512-1fArfVDUqVbb5z8n+/nVQb+VNBzx8svY6CrsyTK4Ujm4yrd9I1auoKxBAPXLCavY1LcrbHUskQbGUP8gXOzyQw==",
            ("build/vega.min.js",)),
    Package("vega-lite", "5.23.0",
            "sha512-l4J6+AWE3DIjvovEoHl2LdtCUkfm4zs8Xxx7INwZEAv+XVb6kR6vIN1gt3t2gN2gs/y4DYTs/RPoTeYAuEg6mA==",
            ("build/vega-lite.min.js",)),
    Package("vega-embed", "6.29.0",
            "sha512-PmlshTLtLFLgWtF/b23T1OwX53AugJ9RZ3qPE2c01VFAbgt3/GSNI/etzA/GzdrkceXFma+FDHNXUppKuM0U6Q==",
            ("build/vega-embed.min.js",)),
)

#: Every CDN address of GX 1.24.1's templates -> the local file (``<name>@<version>/<path>``).
CDN_FILES = {
    "https://code.jquery.com/jquery-3.7.1.min.js": "jquery@3.7.1/dist/jquery.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js":
        "popper.js@1.12.9/dist/umd/popper.min.js",
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js":
        "bootstrap@4.3.1/dist/js/bootstrap.min.js",
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css":
        "bootstrap@4.3.1/dist/css/bootstrap.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js":
        "bootstrap-table@1.19.1/dist/bootstrap-table.min.js",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css":
        "bootstrap-table@1.19.1/dist/bootstrap-table.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.js":
        "bootstrap-table@1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.js",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.css":
        "bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.css",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.min.css":
        "bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js":
        "bootstrap-datepicker@1.9.0/dist/js/bootstrap-datepicker.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/bootstrap-datepicker.min.css":
        "bootstrap-datepicker@1.9.0/dist/css/bootstrap-datepicker.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css":
        "@fortawesome/fontawesome-free@6.6.0/css/all.min.css",
    "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.css":
        "@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.css",
    "https://cdn.jsdelivr.net/npm/vega@5": "vega@5.33.1/build/vega.min.js",
    "https://cdn.jsdelivr.net/npm/vega-lite@5": "vega-lite@5.23.0/build/vega-lite.min.js",
    "https://cdn.jsdelivr.net/npm/vega-embed@6": "vega-embed@6.29.0/build/vega-embed.min.js",
}
#: GX's S3 image folder (``top_navbar.j2``, ``data_docs_default_styles.css``); its images map to the site's own
#: ``static/images`` copy (``full_logo_dark.png``, which GX does not ship, to ``logo-long.png``).
_S3_IMAGE = re.compile(r"https://great-expectations-web-assets\.s3\.us-east-2\.amazonaws\.com/([\w.-]+)(\?[^\"')\s]*)?")
_S3_FALLBACK = "logo-long.png"
_TAG = re.compile(r"<(?:script|link)\b[^>]*>", re.IGNORECASE)
_ATTR = re.compile(r"\s+(integrity|crossorigin)=\"[^\"]*\"", re.IGNORECASE)


def assets_dir(env: Mapping[str, str] | None = None) -> Path:
    """Folder of the fetched assets: ``GOVLAKE_WEB_ASSETS`` or ``<repo>/.cache/web``."""
    return Path((os.environ if env is None else env).get(ASSETS_ENV) or REPO_ROOT / ".cache" / "web")


def _integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode("ascii")


def fetch_assets(dest: Path | None = None, npm: str = "npm") -> list[Path]:
    """Fetch every package of :data:`PACKAGES` not yet complete under ``dest`` (default :func:`assets_dir`).

    Each tarball comes from the npm registry through ``npm pack <name>@<version>`` (the npm client's registry and
    proxy settings apply); its SHA-512 must equal the pinned integrity; the package's listed files are unpacked
    (tar's ``data`` filter: no links or absolute paths) into a temporary folder renamed to
    ``dest/<name>@<version>`` when whole, with a ``.complete`` marker holding the integrity. Idempotent: a second
    run downloads nothing.

    Returns:
        the package folders (fetched or already there), in :data:`PACKAGES` order.

    Raises:
        RuntimeError: ``npm pack`` failed, or a tarball's integrity differs (nothing of it is kept).
        KeyError: a listed file is not in the tarball.
    """
    dest = Path(dest or assets_dir())
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for pkg in PACKAGES:
        target = dest / pkg.folder
        marker = target / COMPLETE
        out.append(target)
        if marker.is_file() and marker.read_text(encoding="utf-8").strip() == pkg.integrity:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".fetch-", dir=dest) as tmp:
            proc = subprocess.run([npm, "pack", f"{pkg.name}@{pkg.version}", "--pack-destination", tmp, "--silent"],
                                  capture_output=True, text=True, check=False)
            tarballs = list(Path(tmp).glob("*.tgz"))
            if proc.returncode != 0 or len(tarballs) != 1:
                raise RuntimeError(f"npm pack {pkg.name}@{pkg.version} failed ({proc.returncode}): "
                                   f"{proc.stderr.strip()[-500:]}")
            data = tarballs[0].read_bytes()
            if _integrity(data) != pkg.integrity:
                raise RuntimeError(f"{pkg.name}@{pkg.version}: tarball integrity {_integrity(data)} is not the "
                                   f"pinned {pkg.integrity}")
            unpacked = Path(tmp) / "unpacked"
            with tarfile.open(tarballs[0], "r:gz") as tar:
                names = tar.getnames()
                members = []
                for f in pkg.files:
                    want = [n for n in names if (n.startswith(f"package/{f}") if f.endswith("/")
                                                 else n == f"package/{f}")]
                    if not want:
                        raise KeyError(f"{pkg.name}@{pkg.version}: no {f} in its tarball")
                    members += [tar.getmember(n) for n in want]
                tar.extractall(unpacked, members=members, filter="data")
            package_root = unpacked / "package"
            fsio.atomic_write_text(package_root / COMPLETE, pkg.integrity + "\n")
            if target.exists():
                shutil.rmtree(target)
            os.replace(package_root, target)
        logger.info("web asset %s fetched into %s", pkg.folder, target)
    return out


def assets_complete(source: Path | None = None) -> bool:
    """Whether every package of :data:`PACKAGES` is unpacked whole under ``source`` (default :func:`assets_dir`)
    with the pinned integrity."""
    source = Path(source or assets_dir())
    markers = [source / p.folder / COMPLETE for p in PACKAGES]
    return all(m.is_file() and m.read_text(encoding="utf-8").strip() == p.integrity
               for m, p in zip(markers, PACKAGES, strict=True))


def _copy_assets(site: Path, source: Path) -> None:
    """Copy every package's listed files from ``source`` into ``<site>/static/vendor`` (unchanged files left)."""
    for pkg in PACKAGES:
        root = source / pkg.folder
        for f in pkg.files:
            paths = sorted(p for p in (root / f).rglob("*") if p.is_file()) if f.endswith("/") else [root / f]
            for path in paths:
                fsio.atomic_write_bytes(site / VENDOR_DIR / pkg.folder / path.relative_to(root), path.read_bytes(),
                                        skip_unchanged=True)


@cache
def _sha384(path: Path, mtime_ns: int) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(path.read_bytes()).digest()).decode("ascii")


def _local_tag(tag: str, page: Path, site: Path) -> str:
    """A ``<script>``/``<link>`` tag with its CDN address replaced by the relative path of the site's copy."""
    for url, local in CDN_FILES.items():
        if f'"{url}"' not in tag:
            continue
        copy = site / VENDOR_DIR / local
        sri = re.search(r'integrity="([^"]*)"', tag)
        if sri and sri.group(1) != _sha384(copy, copy.stat().st_mtime_ns):
            raise ValueError(f"{copy} is not the file the template pins ({url}, {sri.group(1)})")
        tag = _ATTR.sub("", tag.replace(f'"{url}"', f'"{os.path.relpath(copy, page.parent)}"'))
    return tag


def _local_images(text: str, page: Path, site: Path) -> str:
    images = site / "static" / "images"

    def one(m: re.Match) -> str:
        name = m.group(1) if (images / m.group(1)).is_file() else _S3_FALLBACK
        return os.path.relpath(images / name, page.parent)

    return _S3_IMAGE.sub(one, text)


def _expectation_cells(result: dict) -> list[tuple[int, int, dict]]:
    """``(section, row, expectation result)`` of each result as GX 1.24's validation page lays them out
    (``ValidationResultsPageRenderer``): section 1 is the overview, then "Table-Level Expectations" (results without
    a ``column`` kwarg) if any, then one section per column in ``Renderer._get_column_list_from_evrs`` order
    (sorted names, or the observed order of ``expect_table_columns_to_match_ordered_list`` when it names the same
    columns); rows in result order (1-based)."""
    groups: dict[str, list[dict]] = {}
    for r in result.get("results", []):
        column = (r.get("expectation_config") or {}).get("kwargs", {}).get("column")
        groups.setdefault("\0table" if column is None else column, []).append(r)
    columns = sorted(c for c in groups if c != "\0table")
    ordered = next((r.get("result", {}).get("observed_value") for r in result.get("results", [])
                    if (r.get("expectation_config") or {}).get("type")
                    == "expect_table_columns_to_match_ordered_list"), None)
    if ordered and set(ordered) == set(columns):
        columns = list(ordered)
    order = (["\0table"] if "\0table" in groups else []) + columns
    return [(s, i, r) for s, key in enumerate(order, start=2) for i, r in enumerate(groups[key], start=1)]


def _quarantine_links(text: str, page: Path, site: Path) -> str:
    """Add to each failed expectation's row of a validation page a link to its quarantine extract, when one exists
    (``<reports>/quarantine/<date>/<table>/<rule_id>.html``; date = the run name's part after ``:``, table = the
    suite name after its layer)."""
    rel = page.relative_to(site / "validations")
    stored = site.parents[1] / "validations" / rel.with_suffix(".json")
    try:
        result = json.loads(stored.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return text
    suite = result.get("suite_name") or ""
    run_name = str((result.get("meta", {}).get("run_id") or {}).get("run_name") or "")
    if "." not in suite or ":" not in run_name:
        return text
    folder = site.parents[3] / QUARANTINE_DIR / run_name.rsplit(":", 1)[1] / suite.split(".", 1)[1]
    for section, row, r in _expectation_cells(result):
        rule_id = ((r.get("expectation_config") or {}).get("meta") or {}).get("rule_id")
        extract = folder / f"{rule_id}.html"
        if r.get("success") or not rule_id or not extract.is_file():
            continue
        cell = re.compile(rf'(<td id="section-{section}-content-block-2-cell-{row}-2"[^>]*>\s*<div[^>]*>)')
        link = (f'<a class="{LINK_CLASS}" data-rule-id="{html.escape(rule_id)}" '
                f'href="{html.escape(os.path.relpath(extract, page.parent))}">quarantined rows of '
                f'{html.escape(rule_id)}</a><br>')
        text = cell.sub(lambda m, link=link: m.group(1) + link, text, count=1)  # type: ignore[misc]
    return text


def offline_page(text: str, page: Path, site: Path) -> str:
    """One page of the site made self-contained (see the module docstring); a page already done is returned as
    it is."""
    if MARKER in text:
        return text
    text = _TAG.sub(lambda m: _local_tag(m.group(0), page, site), text)
    text = _local_images(text, page, site)
    if page.parts[len(site.parts)] == "validations" and LINK_CLASS not in text:
        text = _quarantine_links(text, page, site)
    return re.sub(r"<head>", "<head>\n    " + MARKER, text, count=1, flags=re.IGNORECASE)


def make_site_offline(site: Path, source: Path | None = None) -> int:
    """Make the Data Docs site under ``site`` (``.../data_docs/local_site``) self-contained: copy the assets from
    ``source`` (default :func:`assets_dir`) into it, point every page (``*.html``) and GX style sheet at the
    copies, and link failed rules to their quarantine extracts (see the module docstring). Pages GX did not
    rewrite since the last call are skipped (they hold :data:`MARKER`).

    Returns:
        the number of files rewritten; 0 and a warning when the assets were never fetched (the pages keep their
        CDN addresses; run ``docker/setup.sh`` or ``python -m govlake.quality.offline_docs fetch``).

    Raises:
        ValueError: a copy's SHA-384 differs from the ``integrity`` a template pins for it.
    """
    site = Path(site).resolve()
    source = Path(source or assets_dir())
    if not assets_complete(source):
        logger.warning("Data Docs at %s keep their CDN links: the web assets are not fetched into %s "
                       "(python -m govlake.quality.offline_docs fetch)", site, source)
        return 0
    _copy_assets(site, source)
    written = 0
    pages = [p for p in site.rglob("*.html") if not fsio.is_temp_name(p.name)]
    styles = [p for p in (site / "static" / "styles").glob("*.css") if not fsio.is_temp_name(p.name)]
    for path in pages + styles:
        text = path.read_text(encoding="utf-8")
        if "https://" not in text and path in styles:
            continue
        new = _local_images(text, path, site) if path in styles else offline_page(text, path, site)
        written += fsio.atomic_write_text(path, new, skip_unchanged=True)
    return written


def main(argv: list[str] | None = None) -> int:
    """``python -m govlake.quality.offline_docs fetch [DEST]`` (:func:`fetch_assets`), ``check [DEST]`` (exit 1
    when :func:`assets_complete` is false) or ``site SITE_DIR`` (:func:`make_site_offline`)."""
    args = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args[:1] == ["fetch"] and len(args) <= 2:
        fetch_assets(Path(args[1]) if len(args) == 2 else None)
        return 0
    if args[:1] == ["check"] and len(args) <= 2:
        return 0 if assets_complete(Path(args[1]) if len(args) == 2 else None) else 1
    if args[:1] == ["site"] and len(args) == 2:
        print(make_site_offline(Path(args[1])))
        return 0
    print("usage: python -m govlake.quality.offline_docs fetch|check [DEST] | site SITE_DIR", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
