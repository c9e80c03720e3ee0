"""A CJK font for self-contained HTML pages: the subset of a TrueType/OpenType font covering a page's characters,
as WOFF2 (brotli) in a base64 ``@font-face`` rule, so a report renders its Chinese text on a machine without CJK
system fonts and without a network.

The font file is ``GOVLAKE_CJK_FONT`` (:func:`govlake.core.config.cjk_font_path`), by default Debian's
``fonts-droid-fallback`` (Droid Sans Fallback, Apache-2.0), installed by ``docker/setup.sh``. Subsetting uses
fontTools' subsetter (``fontTools.subset``): glyphs of the requested code points only, hinting dropped, names kept;
WOFF2 needs the ``brotli`` package. The output is deterministic: same font and text give the same bytes.
"""
from __future__ import annotations

import base64
import io
from pathlib import Path

from govlake.core.config import cjk_font_path

#: CSS / plotly family name of the embedded face.
FAMILY = "GovLake CJK"
#: Printable ASCII is always kept (digits, Latin labels, punctuation drawn by plotly at run time: ticks, hovers).
ALWAYS = "".join(chr(c) for c in range(0x20, 0x7F))


def load_cjk_font(path: Path | str | None = None) -> Path:
    """The CJK font file: ``path``, else ``GOVLAKE_CJK_FONT``, else Debian's Droid Sans Fallback.

    Raises:
        FileNotFoundError: the file does not exist (the message names the path, the variable and the package).
    """
    font = Path(path) if path is not None else cjk_font_path()
    if not font.is_file():
        raise FileNotFoundError(
            f"CJK font for the report not found: {font} — install Debian's fonts-droid-fallback "
            "(docker/setup.sh does) or set GOVLAKE_CJK_FONT to a TrueType/OpenType font with CJK glyphs")
    return font


def subset_woff2(text: str, path: Path | str | None = None) -> bytes:
    """WOFF2 bytes of the font (:func:`load_cjk_font`) cut to the code points of ``text`` plus :data:`ALWAYS`.

    Characters the font lacks are skipped (the browser falls back to another font for them). Hinting is dropped
    (screen use; smaller); ``timestamp`` is kept so the bytes do not depend on the clock.

    Raises:
        FileNotFoundError: no font file (:func:`load_cjk_font`).
    """
    from fontTools import subset
    from fontTools.ttLib import TTFont

    font_path = load_cjk_font(path)
    options = subset.Options()
    options.flavor = "woff2"
    options.hinting = False
    options.desubroutinize = True
    options.layout_features = ["*"]
    options.name_IDs = ["*"]
    options.notdef_outline = True
    options.recalc_timestamp = False
    unicodes = sorted({ord(c) for c in text + ALWAYS if not c.isspace() or c == " "})
    font = TTFont(str(font_path), lazy=False, recalcTimestamp=False)
    try:
        subsetter = subset.Subsetter(options=options)
        subsetter.populate(unicodes=unicodes)
        subsetter.subset(font)
        buf = io.BytesIO()
        font.flavor = "woff2"
        font.save(buf, reorderTables=False)
    finally:
        font.close()
    return buf.getvalue()


def font_face_css(text: str, path: Path | str | None = None, family: str = FAMILY) -> str:
    """A CSS ``@font-face`` rule for ``family`` whose source is the WOFF2 subset (:func:`subset_woff2`) of ``text``
    as a base64 ``data:`` URL (``font-display: block``: no text is drawn in a fallback font first).

    Raises:
        FileNotFoundError: no font file (:func:`load_cjk_font`).
    """
    data = base64.b64encode(subset_woff2(text, path)).decode("ascii")
    return (f'@font-face{{font-family:"{family}";font-style:normal;font-weight:400;font-display:block;'
            f'src:url(data:font/woff2;base64,{data}) format("woff2")}}')


def covered(woff2: bytes) -> set[str]:
    """Characters mapped by a font file's ``cmap`` (to check a subset)."""
    from fontTools.ttLib import TTFont

    font = TTFont(io.BytesIO(woff2))
    try:
        return {chr(c) for c in font.getBestCmap()}
    finally:
        font.close()
