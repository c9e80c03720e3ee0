"""Addresses of the unified repository: free text standardised against the standard address registry (标准地址库),
geocoded, and assigned to a 网格 grid cell by point-in-polygon (``unified.address``).

Pipeline (pure transforms; I/O only in :func:`run` and :func:`main`):

1. **Normalise** (:func:`normalize_text`, :func:`canonical_number`), rules in order:

   - N1 Unicode NFKC: full-width digits, letters and punctuation to half-width (``１２号楼`` → ``12号楼``,
     ``－`` → ``-``; GB 18030 / Unicode compatibility decomposition);
   - N2 every whitespace character removed (NFKC already made U+3000 ideographic space a space);
   - N3 the city's province and city names dropped at the start, full or short (``河北省``/``河北``,
     ``石家庄市``/``石家庄`` for the sample city; the names come from the division lists, see
     :func:`place_prefixes`): the division codes below carry them;
   - N4 ``…街道办事处`` → ``…街道``; a committee's full name (``…社区居民委员会``, ``…村民委员会``, ``…居委会``,
     ``…村委会``) is recognised by the gazetteer and written in its everyday short form (:func:`short_name`:
     ``棉一东社区``, ``东营村``), the form of the registry's ``full_address``;
   - N5 in the house-number part only (after the community name, so place names such as 棉一东社区 keep their
     characters): Chinese numerals to Arabic (``十二号楼`` → ``12号楼``, ``两单元`` → ``2单元``, ``一〇二室`` →
     ``102室``);
   - N6 building variants ``栋``, ``幢``, ``座``, ``号楼``, ``楼`` after a number → ``号楼``; unit ``单元`` or ``门``
     → ``单元``; room ``室``, ``号``, ``户`` (or nothing) after the unit → ``室``; the dash form ``12-3-1502`` →
     ``12号楼3单元1502室``;
   - N7 leading zeros of each number dropped (``05单元`` → ``5单元``, registry ``room_no`` ``0202`` → ``202``).

   The standard form is ``<district><street><community><house number>`` where the house number is
   ``B号楼U单元R室`` (urban building, unit, room) or ``N号`` (village house), the structure of the registry's own
   ``full_address`` and of the 地址 element order of GB/T 23705-2009 《数字城市地理信息公共平台地名/地址编码规则》
   (administrative area → street/town → community → 门(楼)牌号 → building → unit → room). Only the parts present
   in the text are written (a missing district is not filled in), so the exact match below stays exact.

2. **Parse** the division part against the gazetteer of division names and codes
   (``schemas/reference/divisions``: GB/T 2260 districts, the statistical division codes of streets (9 digits)
   and community/village committees (12 digits), 国家统计局 统计用区划代码): longest district name, then the
   longest street name of that district (of the city when no district was found), then the longest community
   name (short or full form) of that street (district, city); a name that is not unique among the candidates
   is not taken. The house-number part is what follows the community.

3. **Match** each distinct normalised text against the registry (:func:`match_addresses`), first rule that holds:

   - ``exact``: the normalised text equals the normalised ``full_address`` of a registry row;
   - ``component``: same community code and same house number (building + unit + room, or village house
     number) as a registry row — the text differs only in how it names the divisions (e.g. district omitted);
   - ``community_only``: the community was recognised but no registry address has that house number (no
     address_id, no point);
   - ``unmatched``: no community recognised. Unmatched rows are kept (``match_level = 'unmatched'``) and counted.

   Several registry rows with the same key: the latest ``updated_at`` wins, then the smallest ``address_id``.
   The registry's ``division_code`` is repaired when it lost the leading zeros of its street or community part
   (the fault ``division_code_lost_zeros``, :func:`restore_division_code`).

4. **Geocode**: the matched registry row's ``lng``/``lat``. The registry declares them WGS-84 degrees
   (``schemas/sources/address.yaml``; the sample draws them inside the district polygons of
   ``schemas/reference/boundaries``, CGCS2000 ≈ WGS-84, not GCJ-02). :func:`clean_point` keeps a point inside
   China's extent (lng 73.33–135.05, lat 3.85–53.56), swaps back one whose lng and lat were exchanged
   (``coord_status = 'swapped'``) and drops any other (``'invalid'``, e.g. 0/0).

5. **Grid** (:func:`assign_grids`): the point in the grid-management centre's grid polygons
   (``<sources>/reference/grid_boundaries.geojson``, see :mod:`sample.grids`), by a shapely STRtree per
   Spark partition (``mapInPandas``; the polygons broadcast as WKB): ``grid_method = 'point_in_polygon'``. A point
   on no polygon, or no point, falls back to the registry row's own ``grid_code`` when that grid lies in the
   address's community (``'registry'``); otherwise ``grid_code`` is NULL (``grid_method`` NULL).

``unified.address`` (:data:`ADDRESS_COLUMNS`, contract ``tables/unified.address.yaml``) is MERGEd on
``address_key`` = SHA-256 hex of the normalised text, so a rerun changes nothing.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import re
import sys
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, cast

from govlake.core.config import REFERENCE_DIR, SAMPLE_CITY_CODE, Settings

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

#: Columns of unified.address (all STRING but lng/lat DOUBLE), in order.
ADDRESS_COLUMNS = ("address_key", "raw_address", "normalized_address", "match_level", "address_id",
                   "district_code", "street_code", "community_code", "lng", "lat", "coord_status", "grid_code",
                   "grid_method")
MATCH_LEVELS = ("exact", "component", "community_only", "unmatched")
#: Where the generator / grid-management centre publishes the grid polygons, under the sources folder.
BOUNDARIES_FILE = Path("reference") / "grid_boundaries.geojson"
#: China's extent in degrees (westernmost 73°33′E Pamirs, easternmost 135°05′E Heilong/Wusuli confluence,
#: southernmost 3°51′N Zengmu Reef, northernmost 53°33′N Mohe): a WGS-84 point outside it is not a Chinese address.
CHINA_LNG, CHINA_LAT = (73.33, 135.05), (3.85, 53.56)

_ZH_DIGITS = {"〇": 0, "零": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8,
              "九": 9}
_ZH_NUMERAL = re.compile("[〇零一二两三四五六七八九十百]+")
#: Committee suffixes and what an everyday address keeps of them (N4): 居民委员会 / 居委会 nothing (the name
#: itself usually ends in 社区), 村民委员会 / 村委会 '村' (unless the name already ends in 村).
_SUFFIXES = (("居民委员会", ""), ("居委会", ""), ("村民委员会", "村"), ("村委会", "村"))
_BUILDING = r"(?:号楼|栋|幢|座|楼)"
_NUMBER_FORMS = (
    re.compile(rf"^(\d+){_BUILDING}(\d+)(?:单元|门)(\d+)(?:室|号|户)?$"),
    re.compile(r"^(\d+)-(\d+)-(\d+)(?:室|号)?$"),
)
_HOUSE = re.compile(r"^(\d+)号$")


def zh_numeral(text: str) -> int:
    """Value of a Chinese numeral: positional digit strings (``一〇二`` = 102) or with 十/百 (``十二`` = 12,
    ``二十`` = 20, ``一百零五`` = 105).

    Raises:
        ValueError: a character that is not a Chinese digit, 十 or 百.
    """
    if any(c not in _ZH_DIGITS and c not in "十百" for c in text):
        raise ValueError(f"not a Chinese numeral: {text!r}")
    if "十" not in text and "百" not in text:
        return int("".join(str(_ZH_DIGITS[c]) for c in text))
    total, digit = 0, None
    for c in text:
        if c in _ZH_DIGITS:
            digit = _ZH_DIGITS[c]
        else:
            total += (1 if digit is None else digit) * (10 if c == "十" else 100)
            digit = None
    return total + (digit or 0)


#: Suffixes of province- and prefecture-level names (GB/T 2260) whose stem is the everyday short name.
_PROVINCE_SUFFIXES = ("特别行政区", "维吾尔自治区", "壮族自治区", "回族自治区", "自治区", "省", "市")
_CITY_SUFFIXES = ("地区", "市", "盟")


def place_prefixes(province_name: str | None, city_name: str | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The province and city names rule N3 drops: each full name and its short form, longest first.

    Args:
        province_name: GB/T 2260 province-level name (``河北省``, ``北京市``, ``内蒙古自治区``), or None.
        city_name: prefecture-level name (``石家庄市``); ``市辖区`` / ``县`` (the placeholder of the
            municipalities' lists) and None give no city prefix.

    Returns:
        ``(province forms, city forms)``, e.g. ``(("河北省", "河北"), ("石家庄市", "石家庄"))``. An
        autonomous prefecture (``…自治州``) keeps only its full name: its short form is not a fixed rule.

    >>> place_prefixes("内蒙古自治区", "呼和浩特市")
    (('内蒙古自治区', '内蒙古'), ('呼和浩特市', '呼和浩特'))
    """
    def forms(name: str | None, suffixes: tuple[str, ...]) -> tuple[str, ...]:
        if not name or name in ("市辖区", "县"):
            return ()
        short = next((name[: -len(x)] for x in suffixes if name.endswith(x) and len(name) - len(x) >= 2), None)
        return (name, short) if short else (name,)
    return forms(province_name, _PROVINCE_SUFFIXES), forms(city_name, _CITY_SUFFIXES)


#: N3 for the bundled sample city (石家庄市, 河北省); :class:`Gazetteer` carries its own city's forms.
SAMPLE_PREFIXES = place_prefixes("河北省", "石家庄市")


def normalize_text(raw: str | None,
                   prefixes: tuple[tuple[str, ...], tuple[str, ...]] = SAMPLE_PREFIXES) -> str | None:
    """Rules N1–N4 on a whole address text: NFKC, no whitespace, no province/city prefix, 街道办事处 → 街道.
    ``None`` or an empty result → ``None``.

    Args:
        raw: the address as delivered.
        prefixes: ``(province forms, city forms)`` of :func:`place_prefixes`, dropped in that order
            (the province first, then the city), each at most once.

    >>> normalize_text(" 河北省石家庄市长安区　南村镇南村社区２３号楼")
    '长安区南村镇南村社区23号楼'
    """
    if raw is None:
        return None
    text = re.sub(r"\s+", "", unicodedata.normalize("NFKC", raw))
    for forms in prefixes:
        prefix = next((f for f in forms if text.startswith(f)), None)
        if prefix:
            text = text[len(prefix):]
    return text.replace("街道办事处", "街道") or None


def canonical_number(part: str) -> tuple[str | None, str | None, str | None, str | None, str]:
    """Rules N5–N7 on the house-number part: (building, unit, room, house_no, canonical text); numbers as digit
    strings without leading zeros, NULL when absent. A part in no known form is returned as it is (after N5).

    >>> canonical_number("十二栋03门1502")
    ('12', '3', '1502', None, '12号楼3单元1502室')
    """
    text = _ZH_NUMERAL.sub(lambda m: str(zh_numeral(m[0])), part)
    for form in _NUMBER_FORMS:
        m = form.match(text)
        if m:
            b, u, r = (str(int(x)) for x in m.groups())
            return b, u, r, None, f"{b}号楼{u}单元{r}室"
    m = _HOUSE.match(text)
    if m:
        h = str(int(m[1]))
        return None, None, None, h, f"{h}号"
    return None, None, None, None, text


def short_name(name: str) -> str:
    """A committee's everyday name (N4): '棉一东社区居民委员会' → '棉一东社区', '东营村民委员会' → '东营村',
    '南庄村村民委员会' → '南庄村'; a name without a committee suffix is kept."""
    for long, short in _SUFFIXES:
        if name.endswith(long) and len(name) > len(long):
            stem = name[: -len(long)]
            return stem if stem.endswith(short) else stem + short
    return name


@dataclass
class Gazetteer:
    """Division names → codes of one city: districts (6-digit GB/T 2260), streets (9), communities (12)."""

    districts: dict[str, str] = field(default_factory=dict)          # name → code
    district_names: dict[str, str] = field(default_factory=dict)     # code → name
    streets: dict[str, dict[str, list[str]]] = field(default_factory=dict)      # district code | '' → name → codes
    street_names: dict[str, str] = field(default_factory=dict)       # code → name
    communities: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # street/district code | '' → ...
    community_names: dict[str, str] = field(default_factory=dict)    # code → short name
    prefixes: tuple[tuple[str, ...], tuple[str, ...]] = SAMPLE_PREFIXES  # N3: province and city name forms


def build_gazetteer(areas: list[dict], streets: list[dict], villages: list[dict],
                    city_code: str = SAMPLE_CITY_CODE, province_name: str | None = "河北省",
                    city_name: str | None = "石家庄市") -> Gazetteer:
    """A :class:`Gazetteer` from rows of ``divisions/areas.csv`` (code, name), ``streets_<city>.csv`` (code, name,
    areaCode) and ``villages_<city>.csv`` (code, name, streetCode, areaCode). Districts are those whose code starts
    with the city's 4 digits. Communities are indexed under their short and full names. ``province_name`` and
    ``city_name`` (GB/T 2260 names of the city's province and of the city) give rule N3's prefixes
    (:func:`place_prefixes`); :func:`load_gazetteer` reads them from ``provinces.csv`` / ``cities.csv``."""
    g = Gazetteer(prefixes=place_prefixes(province_name, city_name))
    for a in areas:
        if a["code"].startswith(city_code[:4]) and a["code"] != city_code:
            g.districts[a["name"]] = a["code"]
            g.district_names[a["code"]] = a["name"]
    for s in streets:
        g.street_names[s["code"]] = s["name"]
        for scope in (s["areaCode"], ""):
            g.streets.setdefault(scope, {}).setdefault(s["name"], []).append(s["code"])
    for v in villages:
        short = short_name(v["name"])
        g.community_names[v["code"]] = short
        for scope in (v["streetCode"], v["areaCode"], ""):
            for name in {short, v["name"]}:
                g.communities.setdefault(scope, {}).setdefault(name, []).append(v["code"])
    return g


def load_gazetteer(reference_dir: Path = REFERENCE_DIR, city_code: str = SAMPLE_CITY_CODE) -> Gazetteer:
    """:func:`build_gazetteer` from ``<reference_dir>/divisions``.

    Raises:
        FileNotFoundError: a divisions file is missing.
    """
    def read(name: str) -> list[dict]:
        with (reference_dir / "divisions" / name).open(newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    province = next((r["name"] for r in read("provinces.csv") if r["code"] == city_code[:2]), None)
    city = next((r["name"] for r in read("cities.csv") if r["code"] == city_code[:4]), None)
    return build_gazetteer(read("areas.csv"), read(f"streets_{city_code}.csv"), read(f"villages_{city_code}.csv"),
                           city_code, province, city)


def _prefix(text: str, names: dict[str, list[str]] | None) -> tuple[str, str] | None:
    """(name, code) of the longest name in ``names`` that starts ``text`` and has one code; else None."""
    if not names:
        return None
    for n in range(min(len(text), max(map(len, names))), 0, -1):
        codes = names.get(text[:n])
        if codes is not None:
            return (text[:n], codes[0]) if len(set(codes)) == 1 else None
    return None


@dataclass(frozen=True)
class Parsed:
    """A standardised address text: codes NULL where not recognised; numbers without leading zeros."""

    normalized: str | None
    district_code: str | None = None
    street_code: str | None = None
    community_code: str | None = None
    building: str | None = None
    unit: str | None = None
    room: str | None = None
    house_no: str | None = None

    @property
    def number_key(self) -> str | None:
        """'b/u/r' or 'h' (the house number used by the component match), None when unparsed."""
        if self.building is not None:
            return f"{self.building}/{self.unit}/{self.room}"
        return self.house_no


def parse_address(raw: str | None, gaz: Gazetteer) -> Parsed:
    """Normalise and parse one address text (rules N1–N7, gazetteer parse of the module docstring).

    The normalised text is the division part as written (after N1–N4) + the canonical house number.
    """
    text = normalize_text(raw, gaz.prefixes)
    if text is None:
        return Parsed(None)
    rest, district, street, community = text, None, None, None
    hit = _prefix(rest, {k: [v] for k, v in gaz.districts.items()})
    if hit:
        district = hit[1]
        rest = rest[len(hit[0]):]
    hit = _prefix(rest, gaz.streets.get(district or ""))
    if hit:
        street = hit[1]
        district = district or street[:6]
        rest = rest[len(hit[0]):]
    hit = _prefix(rest, gaz.communities.get(street or district or ""))
    if hit:
        community = hit[1]
        street, district = street or community[:9], district or community[:6]
        rest = rest[len(hit[0]):]
        head = text[: len(text) - len(rest) - len(hit[0])] + gaz.community_names[community]
    else:
        head, rest = text[: len(text) - len(rest)], rest
    if community is None:
        return Parsed(text, district, street, None)
    b, u, r, h, number = canonical_number(rest)
    return Parsed(head + number, district, street, community, b, u, r, h)


def restore_division_code(division_code: str | None, street_code: str | None, grid_code: str | None) -> str | None:
    """The 12-digit community code of a registry row whose ``division_code`` may have lost the leading zeros of
    its 3-digit street and community parts (``'13010211'`` for ``'130102001001'``, fault division_code_lost_zeros):
    a 12-digit code is kept; otherwise, with a 9-digit ``street_code`` whose 6 first digits start the code and whose
    street part (as an integer) follows them, the remaining digits are the community part, zero-padded to 3; else
    the first 12 digits of a 15-digit ``grid_code``; else None."""
    if division_code and re.fullmatch(r"\d{12}", division_code):
        return division_code
    if division_code and street_code and re.fullmatch(r"\d{9}", street_code) and division_code.isdigit():
        lead = street_code[:6] + str(int(street_code[6:]))
        tail = division_code[len(lead):]
        if division_code.startswith(lead) and 1 <= len(tail) <= 3:
            return street_code + tail.zfill(3)
    if grid_code and re.fullmatch(r"\d{15}", grid_code):
        return grid_code[:12]
    return None


def clean_point(lng, lat) -> tuple[float | None, float | None, str]:
    """(lng, lat, coord_status) of a registry point: 'ok' inside China's extent, 'swapped' when only the
    exchanged pair is (returned exchanged back), else (None, None, 'invalid') — also for NULL or non-numbers."""
    try:
        x, y = float(lng), float(lat)
    except (TypeError, ValueError):
        return None, None, "invalid"

    def inside(a: float, b: float) -> bool:
        return CHINA_LNG[0] <= a <= CHINA_LNG[1] and CHINA_LAT[0] <= b <= CHINA_LAT[1]
    if inside(x, y):
        return x, y, "ok"
    if inside(y, x):
        return y, x, "swapped"
    return None, None, "invalid"


def address_key(normalized: str) -> str:
    """SHA-256 hex of a normalised address text (the key of unified.address)."""
    return hashlib.sha256(normalized.encode("utf-8")).hexdigest()


# --- Spark transforms -----------------------------------------------------------------------------------------

_PARSED_DDL = ("raw STRING, normalized STRING, district_code STRING, street_code STRING, community_code STRING, "
               "number_key STRING")


def _parse_frame(df: DataFrame, column: str, gaz: Gazetteer, extra: tuple[str, ...] = ()) -> DataFrame:
    """``df`` with ``column`` parsed per partition (mapInPandas): raw, normalized, codes, number_key + ``extra``."""
    from pyspark.sql.types import StructType

    schema = cast(StructType, StructType.fromDDL(_PARSED_DDL))
    for name in extra:
        schema = schema.add(df.schema[name])

    def parse(batches):
        import pandas as pd
        for pdf in batches:
            parsed = [parse_address(v, gaz) for v in pdf[column]]
            out = pd.DataFrame({"raw": pdf[column], "normalized": [p.normalized for p in parsed],
                                "district_code": [p.district_code for p in parsed],
                                "street_code": [p.street_code for p in parsed],
                                "community_code": [p.community_code for p in parsed],
                                "number_key": [p.number_key for p in parsed]})
            for name in extra:
                out[name] = pdf[name].values
            yield out
    return df.select(column, *extra).mapInPandas(parse, schema)


def registry_entries(registry: DataFrame, gaz: Gazetteer) -> DataFrame:
    """Standard addresses ready to match, from ``staging.address_standard_address`` rows (all STRING): the latest
    row per address_id (updated_at, then _logical_date), its text parsed, codes repaired, point cleaned.

    Returns columns: address_id, normalized, number_key, district_code, street_code, community_code, lng DOUBLE,
    lat DOUBLE, coord_status, grid_code, updated_at (STRING).
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F
    from pyspark.sql.types import DoubleType, StringType, StructField, StructType

    order = [F.col("updated_at").desc_nulls_last()]
    if "_logical_date" in registry.columns:
        order.append(F.col("_logical_date").desc())
    latest = (registry.where("address_id IS NOT NULL")
              .withColumn("_n", F.row_number().over(Window.partitionBy("address_id").orderBy(*order)))
              .where("_n = 1"))
    cols = ("address_id", "division_code", "street_code", "district_code", "grid_code", "lng", "lat", "updated_at")
    latest = latest.select("full_address", *[F.col(c).cast("string").alias(f"r_{c}") for c in cols])
    parsed = _parse_frame(latest, "full_address", gaz, tuple(f"r_{c}" for c in cols))
    schema = StructType([StructField("address_id", StringType()), StructField("normalized", StringType()),
                         StructField("number_key", StringType()), StructField("district_code", StringType()),
                         StructField("street_code", StringType()), StructField("community_code", StringType()),
                         StructField("lng", DoubleType()), StructField("lat", DoubleType()),
                         StructField("coord_status", StringType()), StructField("grid_code", StringType()),
                         StructField("updated_at", StringType())])

    def repair(batches):
        import pandas as pd
        for pdf in batches:
            rows = []
            for r in pdf.itertuples(index=False):
                community = (restore_division_code(r.r_division_code, r.r_street_code, r.r_grid_code)
                             or r.community_code)
                lng, lat, status = clean_point(r.r_lng, r.r_lat)
                rows.append((r.r_address_id, r.normalized, r.number_key,
                             community[:6] if community else r.r_district_code,
                             community[:9] if community else r.r_street_code, community, lng, lat, status,
                             r.r_grid_code, r.r_updated_at))
            yield pd.DataFrame(rows, columns=schema.fieldNames())
    return parsed.mapInPandas(repair, schema)


def match_addresses(texts: DataFrame, registry: DataFrame, gaz: Gazetteer) -> DataFrame:
    """Standardise and match address texts.

    Args:
        texts: a frame with a STRING column ``address`` (free text; NULL and blank rows are dropped).
        registry: ``staging.address_standard_address`` rows (address_id, full_address, district_code,
            street_code, division_code, lng, lat, grid_code, updated_at as STRING; ``_logical_date`` optional).
        gaz: the division gazetteer.
    Returns:
        one row per distinct normalised text: address_key, raw_address (the smallest raw text giving it),
        normalized_address, match_level, address_id, district_code, street_code, community_code, lng, lat
        (DOUBLE, WGS-84 degrees), coord_status ('ok' | 'swapped' | 'invalid' | NULL without a match),
        registry_grid_code (the matched row's grid_code).
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    parsed = (_parse_frame(texts.select(F.col("address").cast("string").alias("address")).distinct(), "address", gaz)
              .where("normalized IS NOT NULL")
              .groupBy("normalized")
              .agg(F.min("raw").alias("raw_address"), F.first("district_code", True).alias("t_district"),
                   F.first("street_code", True).alias("t_street"), F.first("community_code", True).alias("t_community"),
                   F.first("number_key", True).alias("t_number")))
    reg = registry_entries(registry, gaz)
    pick = [F.col("updated_at").desc_nulls_last(), F.col("address_id")]
    by_text = (reg.where("normalized IS NOT NULL")
               .withColumn("_n", F.row_number().over(Window.partitionBy("normalized").orderBy(*pick)))
               .where("_n = 1").drop("_n", "number_key"))
    by_parts = (reg.where("community_code IS NOT NULL AND number_key IS NOT NULL")
                .withColumn("_n", F.row_number().over(Window.partitionBy("community_code", "number_key")
                                                      .orderBy(*pick)))
                .where("_n = 1").drop("_n", "normalized"))
    reg_cols = ("address_id", "district_code", "street_code", "community_code", "lng", "lat", "coord_status",
                "grid_code")
    exact = parsed.join(by_text.select(F.col("normalized"), *[F.col(c).alias(f"e_{c}") for c in reg_cols]),
                        "normalized", "left")
    joined = exact.join(by_parts.select(F.col("community_code").alias("t_community"),
                                        F.col("number_key").alias("t_number"),
                                        *[F.col(c).alias(f"c_{c}") for c in reg_cols]),
                        ["t_community", "t_number"], "left")
    level = (F.when(F.col("e_address_id").isNotNull(), "exact")
             .when(F.col("c_address_id").isNotNull(), "component")
             .when(F.col("t_community").isNotNull(), "community_only")
             .otherwise("unmatched"))

    def pick_col(c: str, fallback=None):
        e = F.when(F.col("match_level") == "exact", F.col(f"e_{c}")) \
             .when(F.col("match_level") == "component", F.col(f"c_{c}"))
        return e.otherwise(fallback) if fallback is not None else e

    return (joined.withColumn("match_level", level)
            .select(F.sha2(F.col("normalized"), 256).alias("address_key"), "raw_address",
                    F.col("normalized").alias("normalized_address"), "match_level",
                    pick_col("address_id").alias("address_id"),
                    pick_col("district_code", F.col("t_district")).alias("district_code"),
                    pick_col("street_code", F.col("t_street")).alias("street_code"),
                    pick_col("community_code", F.col("t_community")).alias("community_code"),
                    pick_col("lng").cast("double").alias("lng"), pick_col("lat").cast("double").alias("lat"),
                    pick_col("coord_status").alias("coord_status"),
                    pick_col("grid_code").alias("registry_grid_code")))


def load_boundaries(path: Path) -> list[tuple[str, bytes]] | None:
    """(grid_code, WKB) of every feature of a grid-boundary GeoJSON (property ``grid_code``), sorted by
    grid_code; None when the file does not exist (grid assignment then falls back to the registry)."""
    import shapely
    from shapely.geometry import shape

    if not path.exists():
        return None
    features = json.loads(path.read_text(encoding="utf-8"))["features"]
    return sorted((f["properties"]["grid_code"], shapely.to_wkb(shape(f["geometry"]))) for f in features)


def locate(points: list[tuple[float | None, float | None]], cells: list[tuple[str, bytes]]) -> list[str | None]:
    """grid_code of the polygon containing each (lng, lat) point (a point on an edge counts as inside: shapely
    ``intersects``), None for a NULL point or a point in no polygon; several polygons → the smallest grid_code.
    Uses a shapely STRtree over the polygons."""
    import numpy as np
    import shapely

    codes = [c for c, _ in cells]
    tree = shapely.STRtree(shapely.from_wkb([w for _, w in cells]))
    out: list[str | None] = [None] * len(points)
    idx = [i for i, (x, y) in enumerate(points) if x is not None and y is not None
           and not (np.isnan(x) or np.isnan(y))]
    if not idx or not codes:
        return out
    geoms = shapely.points([points[i] for i in idx])
    hits = tree.query(geoms, predicate="intersects")
    for p, c in sorted(zip(hits[0].tolist(), hits[1].tolist(), strict=False), key=lambda t: (t[0], codes[t[1]]),
                       reverse=True):
        out[idx[p]] = codes[c]
    return out


def assign_grids(spark: SparkSession, matched: DataFrame, cells: list[tuple[str, bytes]] | None) -> DataFrame:
    """Grid of each matched address (module docstring, step 5): ``matched`` from :func:`match_addresses` →
    unified.address rows (:data:`ADDRESS_COLUMNS`). Point-in-polygon runs per partition (``mapInPandas``) with the
    polygons broadcast; ``cells`` None or empty → registry fallback only."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, StructField, StructType

    cells = cells or []
    shared = spark.sparkContext.broadcast(cells)
    schema = StructType(list(matched.schema.fields) + [StructField("pip_grid", StringType())])

    def pip(batches):
        for pdf in batches:
            pdf["pip_grid"] = locate(list(zip(pdf["lng"].tolist(), pdf["lat"].tolist(), strict=False)), shared.value) \
                if len(pdf) else []
            yield pdf
    located = matched.mapInPandas(pip, schema)
    registry_ok = F.col("registry_grid_code").isNotNull() & \
        (F.substring("registry_grid_code", 1, 12) == F.col("community_code"))
    grid = F.when(F.col("pip_grid").isNotNull(), F.col("pip_grid")) \
            .when(registry_ok, F.col("registry_grid_code"))
    method = F.when(F.col("pip_grid").isNotNull(), "point_in_polygon").when(registry_ok, "registry")
    return located.withColumn("grid_code", grid).withColumn("grid_method", method).select(*ADDRESS_COLUMNS)


def standardise(spark: SparkSession, texts: DataFrame, registry: DataFrame, gaz: Gazetteer,
                cells: list[tuple[str, bytes]] | None) -> DataFrame:
    """:func:`match_addresses` then :func:`assign_grids`: unified.address rows (:data:`ADDRESS_COLUMNS`)."""
    return assign_grids(spark, match_addresses(texts, registry, gaz), cells)


def grids_of(texts: DataFrame, addresses: DataFrame, gaz: Gazetteer) -> DataFrame:
    """The 网格 grid of each distinct address text, looked up in ``unified.address``.

    Args:
        texts: a frame with a STRING column ``address`` (e.g. ``unified.person``'s; NULL rows are dropped).
        addresses: ``unified.address`` rows (address_key, grid_code).
        gaz: the division gazetteer (the same normalisation as :func:`match_addresses`, so the same key).

    Returns:
        DataFrame address STRING (as given), grid_code STRING (NULL when the text normalises to nothing, is not
        in ``addresses`` or has no grid); one row per distinct text.
    """
    from pyspark.sql import functions as F

    distinct = texts.select(F.col("address").cast("string").alias("address")).where("address IS NOT NULL").distinct()
    keyed = _parse_frame(distinct, "address", gaz).select(
        F.col("raw").alias("address"), F.when(F.col("normalized").isNotNull(), F.sha2(F.col("normalized"), 256))
        .alias("address_key"))
    return (keyed.join(addresses.select("address_key", "grid_code"), "address_key", "left")
            .select("address", "grid_code"))


def counts(addresses: DataFrame) -> dict:
    """{"rows", "match_level": {level: n}, "unmatched" (match_level 'unmatched'), "no_grid" (grid_code NULL),
    "grid_method": {method: n}} of unified.address rows."""
    levels = {r[0]: int(r[1]) for r in addresses.groupBy("match_level").count().collect()}
    methods = {str(r[0]): int(r[1]) for r in addresses.groupBy("grid_method").count().collect()}
    return {"rows": sum(levels.values()), "match_level": {k: levels.get(k, 0) for k in MATCH_LEVELS},
            "unmatched": levels.get("unmatched", 0), "no_grid": methods.get("None", 0),
            "grid_method": dict(sorted(methods.items()))}


# --- accuracy against the generator's truth -------------------------------------------------------------------

def accuracy(truth_households: list[dict], persons_per_household: Counter,
             assigned: dict[str | None, tuple[str | None, str | None]], gaz: Gazetteer) -> dict:
    """Address-to-grid accuracy: for each true household (``truth/households.csv`` rows: household_no, address,
    grid_code) the grid that unified.address assigned to its address (``assigned``: {normalized_address:
    (grid_code, grid_method)}, via :func:`parse_address`) against the true grid.

    Returns {"households", "households_correct", "households_wrong", "households_unassigned",
    "household_accuracy", "persons", "persons_correct", "person_accuracy", "by_grid_method": {method:
    {"households", "correct"}}} (accuracy = correct / total, 0–1; method 'None' = not assigned)."""
    out: Counter[str] = Counter()
    methods: dict[str, Counter] = {}
    for h in truth_households:
        got, method = assigned.get(parse_address(h["address"], gaz).normalized, (None, None))
        n = persons_per_household.get(h["household_no"], 0)
        state = "unassigned" if got is None else ("correct" if got == h["grid_code"] else "wrong")
        out[f"households_{state}"] += 1
        by = methods.setdefault(str(method), Counter())
        by["households"] += 1
        by["correct"] += state == "correct"
        out["persons"] += n
        if state == "correct":
            out["persons_correct"] += n
    hh = len(truth_households)
    return {"households": hh, "households_correct": out["households_correct"],
            "households_wrong": out["households_wrong"], "households_unassigned": out["households_unassigned"],
            "household_accuracy": out["households_correct"] / hh if hh else 0.0,
            "persons": out["persons"], "persons_correct": out["persons_correct"],
            "person_accuracy": out["persons_correct"] / out["persons"] if out["persons"] else 0.0,
            "by_grid_method": {k: dict(v) for k, v in sorted(methods.items())}}


def report(spark: SparkSession, settings: Settings, sources: Path) -> dict:
    """Accuracy of ``unified.address`` (as in the lakehouse of ``settings``) against ``<sources>/truth``
    (households.csv, persons.csv), plus the match-level and grid-method counts of the table.

    Raises:
        FileNotFoundError: truth/households.csv missing (a sample generated before it existed) or no
            unified.address table.
    """
    from govlake.core import lake

    path = settings.table_path("unified", "address")
    if not lake.exists(spark, path):
        raise FileNotFoundError(f"no unified.address at {path}: run the unify stage first")
    table = spark.read.format("delta").load(path)
    assigned = {r[0]: (r[1], r[2]) for r in table.select("normalized_address", "grid_code", "grid_method").collect()}
    with (sources / "truth" / "households.csv").open(newline="", encoding="utf-8") as fh:
        households = list(csv.DictReader(fh))
    with (sources / "truth" / "persons.csv").open(newline="", encoding="utf-8") as fh:
        members = Counter(r["household_no"] for r in csv.DictReader(fh))
    result = accuracy(households, members, assigned, load_gazetteer())
    result["table"] = counts(table)
    return result


def main(argv: list[str] | None = None) -> int:
    """``python -m govlake.unified.address report [--sources DIR]``: prints the accuracy report as JSON; exit 0."""
    parser = argparse.ArgumentParser(prog="python -m govlake.unified.address", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser("report", help="address-to-grid accuracy of unified.address against the generator's truth")
    rep.add_argument("--sources", type=Path, default=None, help="sample sources folder (default: var/sources)")
    args = parser.parse_args(argv)
    from govlake.core.spark import get_spark

    settings = Settings.from_env()
    spark = get_spark(settings)
    result = report(spark, settings, args.sources or settings.sources_dir)
    print(json.dumps(result, ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
