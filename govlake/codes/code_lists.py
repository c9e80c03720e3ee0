"""China code pack: GB 11643 citizen ID numbers, strict dates and national code lists.

Every rule exists twice, with the same semantics:

* pure Python functions (``normalize_id``, ``id_errors``, ``parse_date`` …) for the sample generator and tests;
* Spark ``Column`` builders (``id_normalize_col``, ``id_error_col``, ``parse_date_col`` …) made of native Spark SQL
  expressions only (no Python UDF), for the unified layer at millions of rows.

Standards:

* GB 11643-1999 公民身份号码 (citizen identity number): 6-digit address code (GB/T 2260 division code), 8-digit birth
  date YYYYMMDD, 3-digit sequence code (odd = male, even = female), 1 check character computed with ISO 7064:1983
  MOD 11-2 (``ID_WEIGHTS``, ``ID_CHECK_CHARS``). Legacy 15-digit numbers (GB 11643-1989) have a 2-digit year and no
  check character; they are converted by inserting ``19`` before the year and computing the check character.
* GB/T 2260 administrative division codes (reference data ``schemas/reference/divisions/``).
* GB/T 2261.1-2003 sex codes: 0 未知的性别, 1 男, 2 女, 9 未说明的性别.
* GB/T 3304-1991 ethnic group codes 01–56 (with roman names and 2-letter codes).
* GB/T 2261.2/.3/.4-2003, GB/T 4658-2006, GB/T 4761-2008, GB/T 4762-1984 code lists (``load_code_list``).

Reference data is read from ``schemas/reference/`` (``REFERENCE_DIR``) only, lazily and cached.

Division-code leniency: a citizen ID keeps the division code of the place and year of issue, and many such codes
have since been abolished or renumbered (e.g. 北京市密云县 110228 became 密云区 110118 in 2015). A strict lookup in
the current code list would reject millions of valid IDs, so the check accepts a code when its province (2 digits) is
current AND it is a current county-level code, a province-level code ``xx0000``, or any code whose 4-digit city
prefix is a current city (``cityCode`` of areas.csv) or a listed historical one (``HISTORICAL_CITY_PREFIXES``).
"""
from __future__ import annotations

import csv
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from functools import cache, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from govlake.core.config import REFERENCE_DIR

if TYPE_CHECKING:  # pragma: no cover - typing only; pyspark is imported lazily by the Column builders
    from pyspark.sql import Column

#: GB 11643-1999 §8.2: weights W_i = 2^(17-i) mod 11 for the 17 body digits (ISO 7064 MOD 11-2).
ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
#: Check character for (sum of a_i * W_i) mod 11 = 0..10.
ID_CHECK_CHARS = "10X98765432"

#: Folder of the national code lists (see its SOURCE.md).
CODES_DIR: Path = REFERENCE_DIR / "codes"
#: Folder of the GB/T 2260 division lists (areas.csv, cities.csv, provinces.csv; see SOURCE_codes.md there).
DIVISIONS_DIR: Path = REFERENCE_DIR / "divisions"

#: Earliest birth date accepted in a citizen ID (inclusive).
ID_MIN_BIRTH_DATE = date(1900, 1, 1)
#: Latest birth date accepted in a citizen ID (inclusive); pass ``max_birth_date=`` to move it. A constant, not
#: today's date, so that validation is deterministic.
ID_MAX_BIRTH_DATE = date(2026, 12, 31)

#: The error codes of :func:`id_errors` / :func:`id_error_col`, in the order they are checked.
ID_ERROR_CODES = ("missing", "length", "format", "checksum", "birth_date", "division_code")
#: Flags of :func:`normalize_id`.
ID_FLAGS = ("missing", "fullwidth", "whitespace", "float_mangled", "lowercase_x", "converted_15_to_18")

#: 4-digit city prefixes that no longer exist in areas.csv but still occur in IDs issued before: the 县 groups of
#: the municipalities, abolished when their last counties became districts (GB/T 2260 changes of 2015–2016):
#: 1102 北京市县 (e.g. 110228 密云县), 1202 天津市县 (e.g. 120225 蓟县), 3102 上海市县 (310230 崇明县).
HISTORICAL_CITY_PREFIXES = frozenset({"1102", "1202", "3102"})

#: Spark datetime patterns tried in order by :func:`parse_date` / :func:`parse_date_col`.
DATE_FORMATS: tuple[str, ...] = ("yyyyMMdd", "yyyy-MM-dd", "yyyy-M-d", "yyyy/M/d", "yyyy年M月d日", "yyyy.M.d")

#: GB/T 2261.1-2003 sex codes.
SEX_CODES = ("0", "1", "2", "9")
#: Example department → GB/T 2261.1-2003 mappings for :func:`standardize_sex_col` (keys are matched after
#: NFKC/full-width folding, trimming and upper-casing).
SEX_MAPPINGS: dict[str, dict[str, str]] = {
    "digit": {"0": "0", "1": "1", "2": "2", "9": "9"},
    "chinese": {"男": "1", "女": "2", "男性": "1", "女性": "2", "未知": "0", "未说明": "9"},
    "letter": {"M": "1", "F": "2", "MALE": "1", "FEMALE": "2"},
}

# Whitespace stripped around values (the characters of Java's regex \s), in Python and in Spark alike.
_WS = " \t\n\x0b\x0c\r"
_ID18_RE = "[0-9]{17}[0-9X]"
_ID15_RE = "[0-9]{15}"
#: A number as a spreadsheet or a float column prints it: an exponent, or a decimal point.
#: (``[0-9]+(?:\.[0-9]*)?``, not the equal ``[0-9]+\.?[0-9]*``: that one backtracks quadratically on a long digit
#: string, i.e. on every 18-digit ID.) ``govlake/codes/udf/Gb11643.java`` (the Spark twin) spells the same pattern.
_FLOAT_RE = r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][+-]?[0-9]+|[0-9]+\.[0-9]*"

_CODE_LIST_FILES = {
    "sex": "gbt2261_1_2003_sex.csv",
    "marital_status": "gbt2261_2_2003_marital_status.csv",
    "health_status": "gbt2261_3_2003_health_status_full.csv",
    "health_status_simple": "gbt2261_3_2003_health_status_simple.csv",
    "employment_status": "gbt2261_4_2003_employment_status.csv",
    "ethnicity": "gbt3304_1991_ethnic_groups.csv",
    "education": "gbt4658_2006_education.csv",
    "relation": "gbt4761_2008_family_relation.csv",
    "political": "gbt4762_1984_political_affiliation.csv",
}
#: Names accepted by :func:`load_code_list`.
CODE_LIST_NAMES = tuple(_CODE_LIST_FILES)


def _java(pattern: str) -> str:
    """Anchor a regex body for Spark's ``rlike``/``regexp_extract`` (Java regex, whole-string match)."""
    return f"^(?:{pattern})\\z"


# --------------------------------------------------------------------------------------------- reference data


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


@cache
def _code_list(name: str) -> tuple[tuple[str, str], ...]:
    if name not in _CODE_LIST_FILES:
        raise ValueError(f"unknown code list {name!r}; known: {', '.join(CODE_LIST_NAMES)}")
    return tuple((r["code"], r["name_zh"]) for r in _read_csv(CODES_DIR / _CODE_LIST_FILES[name]))


def load_code_list(name: str) -> dict[str, str]:
    """Return a national code list as ``{code: Chinese name}`` read from ``schemas/reference/codes/``.

    Args:
        name: one of ``CODE_LIST_NAMES``: 'sex' (GB/T 2261.1-2003), 'marital_status' (GB/T 2261.2-2003),
            'health_status' / 'health_status_simple' (GB/T 2261.3-2003), 'employment_status' (GB/T 2261.4-2003),
            'ethnicity' (GB/T 3304-1991), 'education' (GB/T 4658-2006), 'relation' (GB/T 4761-2008, relation to
            the household head), 'political' (GB/T 4762-1984).

    Returns:
        a new dict, file order; codes are strings with their leading zeros (e.g. ``'01'`` → ``'汉族'``).

    Raises:
        ValueError: unknown ``name``.
    """
    return dict(_code_list(name))


@cache
def _divisions() -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    """(province codes, 4-digit city prefixes incl. historical ones, area codes not covered by a city prefix)."""
    provinces = frozenset(r["code"] for r in _read_csv(DIVISIONS_DIR / "provinces.csv"))
    areas = _read_csv(DIVISIONS_DIR / "areas.csv")
    cities = (frozenset(r["cityCode"] for r in areas)
              | frozenset(r["code"] for r in _read_csv(DIVISIONS_DIR / "cities.csv"))
              | HISTORICAL_CITY_PREFIXES)
    # In the 2023 list every county code starts with its cityCode, so this set is empty; kept so the rule stays
    # exactly "in areas.csv OR city prefix known" should a future list break that.
    stray_areas = frozenset(r["code"] for r in areas if r["code"][:4] not in cities)
    return provinces, cities, stray_areas


def is_known_division_code(code6: str | None) -> bool:
    """True when a 6-digit GB/T 2260 code is acceptable as the address code of a GB 11643-1999 citizen ID.

    Rule (lenient on purpose, see the module docstring): the 2-digit province is in provinces.csv AND (the code is
    in areas.csv OR ends with ``0000`` OR its 4-digit prefix is a ``cityCode`` of areas.csv or in
    ``HISTORICAL_CITY_PREFIXES``). City-level codes ``xxxx00`` are covered by the city-prefix clause.
    """
    if code6 is None or len(code6) != 6 or not code6.isascii() or not code6.isdigit():
        return False
    provinces, cities, stray_areas = _divisions()
    return code6[:2] in provinces and (code6[2:] == "0000" or code6[:4] in cities or code6 in stray_areas)


@cache
def _ethnic_aliases() -> tuple[tuple[str, str], ...]:
    rows = _read_csv(CODES_DIR / _CODE_LIST_FILES["ethnicity"])
    aliases: dict[str, str] = {}
    for r in rows:
        name = r["name_zh"]
        keys = {r["code"], name, r["roman_name"].upper(), r["alpha2"].upper()}
        if name.endswith("族"):
            keys.add(name[:-1])  # 汉族 → 汉, 蒙古族 → 蒙古, 京族 → 京
        for key in keys:
            if aliases.setdefault(key, r["code"]) != r["code"]:
                raise ValueError(f"GB/T 3304 alias {key!r} is ambiguous")
    return tuple(sorted(aliases.items()))


def ethnic_aliases() -> dict[str, str]:
    """GB/T 3304-1991 lookup: ``{alias: code}`` where an alias is the 2-digit code, the Chinese name (汉族), the
    name without 族 (汉), the upper-cased roman name (HAN) or the 2-letter code (HA). Codes keep leading zeros.

    Raises:
        ValueError: two groups share an alias (would mean a corrupt reference file).
    """
    return dict(_ethnic_aliases())


def ethnic_name_to_code() -> dict[str, str]:
    """GB/T 3304-1991 ``{Chinese name: code}``, e.g. ``'汉族' → '01'``."""
    return {name: code for code, name in _code_list("ethnicity")}


# -------------------------------------------------------------------------------------------- Python: citizen ID


def id_check_char(body17: str) -> str:
    """Return the GB 11643 check character ('0'-'9' or 'X') of a 17-digit body.

    Raises:
        ValueError: ``body17`` is not 17 ASCII digits.
    """
    if len(body17) != 17 or not body17.isascii() or not body17.isdigit():
        raise ValueError(f"an ID body is 17 digits, got {body17!r}")
    return ID_CHECK_CHARS[sum(int(d) * w for d, w in zip(body17, ID_WEIGHTS, strict=False)) % 11]


@dataclass(frozen=True)
class IdResult:
    """Result of :func:`normalize_id`.

    Attributes:
        normalized: the normalised ID (not necessarily valid: check it with :func:`id_errors`), or None when the
            value is missing or unrecoverable.
        flags: what was done or found, in this order among ``ID_FLAGS``: 'missing', 'fullwidth', 'whitespace',
            'float_mangled', 'lowercase_x', 'converted_15_to_18'.
    """

    normalized: str | None
    flags: tuple[str, ...] = ()


def convert_15_to_18(id15: str) -> str:
    """Convert a legacy 15-digit citizen ID (GB 11643-1989, birth year YY) to 18 characters (GB 11643-1999).

    Inserts ``19`` before the 2-digit year (15-digit numbers were only issued to people born in the 1900s) and
    appends the ISO 7064 MOD 11-2 check character, e.g. ``'130102900101001'`` → ``'13010219900101001'`` + check.

    Raises:
        ValueError: ``id15`` is not 15 ASCII digits.
    """
    if len(id15) != 15 or not id15.isascii() or not id15.isdigit():
        raise ValueError(f"a 15-digit ID is 15 digits, got {id15!r}")
    body = id15[:6] + "19" + id15[6:]
    return body + id_check_char(body)


def normalize_id(value: str | None) -> IdResult:
    """Normalise a citizen ID as keyed in by a department (GB 11643-1999).

    Steps, each recorded as a flag when it changes something: Unicode NFKC (full-width ``１２Ｘ`` → ``12X``:
    'fullwidth'); strip leading/trailing whitespace (``[ \\t\\n\\v\\f\\r]``: 'whitespace'); a number written
    in floating-point form (``'1.10105E+17'``, ``'1.30102199001011E17'``, ``'110105194912310000.0'``) has lost
    digits and cannot be recovered → ``normalized=None``, 'float_mangled'; lower-case ``x`` → ``X``
    ('lowercase_x'); 15 digits → 18 with :func:`convert_15_to_18` ('converted_15_to_18').
    None, '' or blank → ``normalized=None`` with flag 'missing'. Anything else is returned as is (validate it with
    :func:`id_errors`).

    Spark twin: :func:`id_normalize_col` (folds the full-width forms and Unicode spaces only, not all of NFKC).
    """
    if value is None or value == "":
        return IdResult(None, ("missing",))
    value = str(value)
    flags: list[str] = []
    text = unicodedata.normalize("NFKC", value)
    if text != value:
        flags.append("fullwidth")
    stripped = text.strip(_WS)
    if stripped != text:
        flags.append("whitespace")
    if stripped == "":
        return IdResult(None, ("missing", *flags))
    if re.fullmatch(_FLOAT_RE, stripped):
        return IdResult(None, (*flags, "float_mangled"))
    if "x" in stripped:
        stripped = stripped.replace("x", "X")
        flags.append("lowercase_x")
    if re.fullmatch(_ID15_RE, stripped):
        stripped = convert_15_to_18(stripped)
        flags.append("converted_15_to_18")
    return IdResult(stripped, tuple(flags))


def _checked_date(year: int, month: int, day: int, lo: date, hi: date) -> date | None:
    try:
        d = date(year, month, day)
    except ValueError:
        return None
    return d if lo <= d <= hi else None


def id_errors(id18: str | None, *, max_birth_date: date = ID_MAX_BIRTH_DATE) -> list[str]:
    """Validate an 18-character citizen ID (already normalised) against GB 11643-1999.

    Returns the failing error codes in the order of ``ID_ERROR_CODES`` (empty list when valid):

    * 'missing': None or ''; 'length': not 18 characters; 'format': not 17 digits + ``[0-9X]`` (upper-case X).
      Each of these is returned alone (the other checks need a well-formed number).
    * 'checksum': the 18th character is not the ISO 7064 MOD 11-2 check character (GB 11643-1999 §8.2).
    * 'birth_date': positions 7–14 are not a real calendar date YYYYMMDD within
      [``ID_MIN_BIRTH_DATE``, ``max_birth_date``] (1900-01-01 … 2026-12-31 by default).
    * 'division_code': positions 1–6 fail :func:`is_known_division_code` (GB/T 2260, lenient on abolished codes).

    Spark twin: :func:`id_error_col` (first code only).
    """
    if id18 is None or id18 == "":
        return ["missing"]
    if len(id18) != 18:
        return ["length"]
    if not re.fullmatch(_ID18_RE, id18):
        return ["format"]
    errors = []
    if id_check_char(id18[:17]) != id18[17]:
        errors.append("checksum")
    if id_birth_date(id18, max_birth_date=max_birth_date) is None:
        errors.append("birth_date")
    if not is_known_division_code(id18[:6]):
        errors.append("division_code")
    return errors


def id_birth_date(id18: str | None, *, max_birth_date: date = ID_MAX_BIRTH_DATE) -> date | None:
    """Birth date (positions 7–14, YYYYMMDD) of a GB 11643-1999 citizen ID.

    Returns None unless the ID is well formed (18 characters, 17 digits + [0-9X]) and the date passes the
    'birth_date' rule of :func:`id_errors` (real date, 1900-01-01 … ``max_birth_date``). The checksum and the
    division code are not checked.
    """
    if id18 is None or not re.fullmatch(_ID18_RE, id18):
        return None
    return _checked_date(int(id18[6:10]), int(id18[10:12]), int(id18[12:14]), ID_MIN_BIRTH_DATE, max_birth_date)


def id_sex_code(id18: str | None) -> str | None:
    """GB/T 2261.1-2003 sex code from a GB 11643-1999 citizen ID: '1' (男) when the 17th digit (last digit of the
    sequence code) is odd, '2' (女) when even; None unless the ID is well formed (17 digits + [0-9X])."""
    if id18 is None or not re.fullmatch(_ID18_RE, id18):
        return None
    return "1" if int(id18[16]) % 2 else "2"


# -------------------------------------------------------------------------------------------- Python: dates


@lru_cache(maxsize=128)
def _date_pattern(fmt: str) -> tuple[str, tuple[str, str, str]]:
    """Compile a Spark datetime pattern made of yyyy, M/MM, d/dd and literals into (regex body, group order).

    The regex body is valid in both Python ``re`` and Java regex.

    Raises:
        ValueError: another pattern letter, a repeated or missing field, or an unclosed quote.
    """
    parts: list[str] = []
    order: list[str] = []
    i = 0
    while i < len(fmt):
        ch = fmt[i]
        if ch == "'":
            end = fmt.find("'", i + 1)
            if end < 0:
                raise ValueError(f"unclosed quote in date pattern {fmt!r}")
            parts.append(re.escape(fmt[i + 1:end] or "'"))
            i = end + 1
            continue
        if ch.isascii() and ch.isalpha():
            j = i
            while j < len(fmt) and fmt[j] == ch:
                j += 1
            run = j - i
            if ch == "y" and run == 4:
                parts.append("((?!0000)[0-9]{4})")  # years 0001-9999
            elif ch in "Md" and run in (1, 2):
                parts.append("([0-9]{1,2})" if run == 1 else "([0-9]{2})")
            else:
                raise ValueError(f"unsupported field {fmt[i:j]!r} in date pattern {fmt!r} "
                                 "(supported: yyyy, M, MM, d, dd)")
            if ch in order:
                raise ValueError(f"field {ch!r} repeated in date pattern {fmt!r}")
            order.append(ch)
            i = j
            continue
        parts.append(re.escape(ch))
        i += 1
    if sorted(order) != ["M", "d", "y"]:
        raise ValueError(f"date pattern {fmt!r} needs yyyy, M and d")
    return "".join(parts), tuple(order)  # type: ignore[return-value]


def parse_date(value: str | None, formats: Sequence[str] = DATE_FORMATS) -> date | None:
    """Parse a business date strictly.

    Args:
        value: text such as '20240229', '2024-02-29', '2024/2/29', '2024年2月29日', '2024.2.29'; leading and
            trailing whitespace is ignored.
        formats: Spark datetime patterns made of ``yyyy``, ``M``/``MM``, ``d``/``dd`` and literal text
            (``M``/``d`` accept 1 or 2 digits, ``MM``/``dd`` exactly 2); default ``DATE_FORMATS``.

    Returns:
        the date of the first format whose shape matches, or None when none matches or the first match is not a
        real calendar date (``2023年2月30日`` → None, never rolled over to March; '20230229' → None).

    Raises:
        ValueError: a format uses an unsupported pattern letter.

    Spark twin: :func:`parse_date_col`.
    """
    if value is None:
        return None
    text = str(value).strip(_WS)
    for fmt in formats:
        body, order = _date_pattern(fmt)
        m = re.fullmatch(body, text)
        if m:
            parts = dict(zip(order, (int(g) for g in m.groups()), strict=False))
            return _checked_date(parts["y"], parts["M"], parts["d"], date(1, 1, 1), date(9999, 12, 31))
    return None


# --------------------------------------------------------------------------------------- Python: code mapping


def _clean_key(value: object) -> str | None:
    if value is None:
        return None
    return unicodedata.normalize("NFKC", str(value)).strip(_WS).upper()


def _clean_mapping(mapping: Mapping[str, str], allowed: Sequence[str]) -> dict[str, str]:
    cleaned: dict[str, str] = {}
    for key, code in mapping.items():
        if code not in allowed:
            raise ValueError(f"mapping value {code!r} is not one of {list(allowed)}")
        k = _clean_key(key)
        if cleaned.setdefault(k, code) != code:  # type: ignore[arg-type]
            raise ValueError(f"mapping keys collide after trim/upper-case: {k!r}")
    return cleaned


def standardize_sex(value: str | None, mapping: Mapping[str, str]) -> str | None:
    """Map a department's sex value to a GB/T 2261.1-2003 code ('0', '1', '2', '9').

    ``value`` and the mapping keys are compared after NFKC, trimming and upper-casing; unknown → None.

    Raises:
        ValueError: a mapping value is not a GB/T 2261.1 code, or two keys collide after cleaning.
    """
    return _clean_mapping(mapping, SEX_CODES).get(_clean_key(value))  # type: ignore[arg-type]


def standardize_ethnic(value: str | None) -> str | None:
    """Map an ethnic-group value to its GB/T 3304-1991 2-digit code: '01', '1' (leading zero lost), '汉', '汉族',
    'Han', 'HA' → '01'. Compared after NFKC, trimming and upper-casing; unknown → None."""
    key = _clean_key(value)
    if key is None:
        return None
    if re.fullmatch("[0-9]", key):
        key = "0" + key
    return dict(_ethnic_aliases()).get(key)


# ------------------------------------------------------------------------------------------ Spark Column builders


@cache
def _fold_table() -> tuple[str, str]:
    """(from, to) for ``translate``: the full-width forms U+FF01–FF5E and the Unicode spaces that NFKC folds to a
    single ASCII character (``Ａ`` → ``A``, ``１`` → ``1``, U+3000/U+00A0 → space)."""
    src, dst = [], []
    for cp in [*range(0xFF01, 0xFF5F), 0x3000, 0x00A0, *range(0x2000, 0x200B), 0x202F, 0x205F]:
        ch = chr(cp)
        folded = unicodedata.normalize("NFKC", ch)
        if len(folded) == 1 and folded != ch and folded.isascii():
            src.append(ch)
            dst.append(folded)
    return "".join(src), "".join(dst)


def _clean_col(c: Column) -> Column:
    """Cast to string, fold full-width/Unicode spaces, strip [ \\t\\n\\v\\f\\r] at both ends.

    The fold (``translate`` over a table of about 100 characters) only runs on values with a non-ASCII character
    (``octet_length`` > ``length``): it leaves an ASCII value unchanged, and almost every value is ASCII
    (``benchmarks/rule_cost.py`` measures what each rule costs)."""
    from pyspark.sql import functions as F

    src, dst = _fold_table()
    s = c.cast("string")
    return F.btrim(F.when(F.octet_length(s) == F.length(s), s).otherwise(F.translate(s, src, dst)), F.lit(_WS))


def id_normalize_col(c: Column) -> Column:
    """Spark twin of :func:`normalize_id` (GB 11643-1999): string Column → string Column.

    ``c`` may be a string or a number (cast to string). Full-width digits/letters and Unicode spaces are folded
    (U+FF01–FF5E → ASCII, U+3000/U+00A0/U+2000–200A/U+202F/U+205F → space, the table of :func:`_fold_table`),
    whitespace ``[ \\t\\n\\v\\f\\r]`` stripped at both ends, blank → NULL, a floating-point rendering
    ('1.10105E+17', '1.2E17', '123.0') → NULL, 15 digits → 18 with '19' inserted before the year and the ISO 7064
    MOD 11-2 check character appended, ``x`` → ``X``. Other values pass through unchanged (validate with
    :func:`id_error_col`). No flags; use :func:`normalize_id` when the flags are needed. Differences from Python:
    other NFKC compatibility characters (①, ²) are not folded.

    Computed by the session function ``govlake_id_normalize`` (Java, ``govlake/codes/udf/Gb11643.java``, registered by
    :func:`govlake.core.spark.get_spark`): as Spark SQL expressions this cost about 5 µs of CPU per value, in Java well
    under 1 µs (``benchmarks/rule_cost.py``).
    """
    from pyspark.sql import functions as F

    return F.call_udf("govlake_id_normalize", c.cast("string"))


def _birth_ok_col(s: Column, max_birth_date: date) -> Column:
    """Positions 7–14 of a well-formed ID are a real date (strict ``try_to_date``) within the GB 11643 range."""
    from pyspark.sql import functions as F

    ymd = F.substring(s, 7, 8)
    return (F.try_to_date(ymd, "yyyyMMdd").isNotNull()
            & ymd.between(F.lit(ID_MIN_BIRTH_DATE.strftime("%Y%m%d")), F.lit(max_birth_date.strftime("%Y%m%d"))))


@cache
def _division_regex() -> str:
    """One Java regex equal to :func:`is_known_division_code` on 6-digit strings (built from the same sets)."""
    provinces, cities, stray_areas = _divisions()
    branches = []
    for p in sorted(provinces):
        alts = ["0000"]
        suffixes = sorted(c[2:] for c in cities if c[:2] == p)
        if suffixes:
            alts.append(f"(?:{'|'.join(suffixes)})[0-9]{{2}}")
        alts.extend(sorted(a[2:] for a in stray_areas if a[:2] == p))
        branches.append(f"{p}(?:{'|'.join(alts)})")
    return _java("|".join(branches))


def _division_ok_col(s: Column) -> Column:
    from pyspark.sql import functions as F

    return F.substring(s, 1, 6).rlike(_division_regex())


def id_error_col(c: Column, *, max_birth_date: date = ID_MAX_BIRTH_DATE) -> Column:
    """Spark twin of :func:`id_errors`: the first failing GB 11643-1999 error code, NULL when valid.

    Input: a normalised citizen-ID string Column (see :func:`id_normalize_col`). Output: string Column, one of
    'missing', 'length' (not 18 characters), 'format' (not 17 digits + ``[0-9X]``), 'checksum' (ISO 7064 MOD 11-2,
    GB 11643-1999 §8.2), 'birth_date' (positions 7–14 a real date within 1900-01-01 … ``max_birth_date``),
    'division_code' (GB/T 2260 province + lenient city prefix, see :func:`is_known_division_code`), or NULL.

    The first five checks are the session function ``govlake_id_error`` (Java, ``govlake/codes/udf/Gb11643.java``;
    about 10 µs of CPU per ID as Spark SQL expressions, well under 1 µs in Java). The division check is a Spark
    regex over positions 1–6 (the division lists inlined as one literal built from areas.csv/provinces.csv, so no
    join and no broadcast), evaluated only when the others pass.
    """
    from pyspark.sql import functions as F

    s = c.cast("string")
    first = F.call_udf("govlake_id_error", s, F.lit(max_birth_date.strftime("%Y%m%d")))
    return F.coalesce(first, F.when(~_division_ok_col(s), F.lit("division_code")))


def id_is_valid_col(c: Column, *, max_birth_date: date = ID_MAX_BIRTH_DATE) -> Column:
    """Boolean Column, never NULL: True when :func:`id_error_col` finds no GB 11643-1999 error (NULL input → False)."""
    return id_error_col(c, max_birth_date=max_birth_date).isNull()


def id_birth_date_col(c: Column, *, max_birth_date: date = ID_MAX_BIRTH_DATE) -> Column:
    """Date Column: birth date (positions 7–14) of a normalised GB 11643-1999 citizen ID, NULL unless the ID is well
    formed and the date passes the 'birth_date' rule (same as :func:`id_birth_date`)."""
    from pyspark.sql import functions as F

    s = c.cast("string")
    ok = s.rlike(_java(_ID18_RE)) & _birth_ok_col(s, max_birth_date)
    return F.when(ok, F.try_to_date(F.substring(s, 7, 8), "yyyyMMdd"))


def id_sex_code_col(c: Column) -> Column:
    """String Column: GB/T 2261.1-2003 sex code from a normalised GB 11643-1999 citizen ID ('1' odd 17th digit,
    '2' even), NULL unless well formed (same as :func:`id_sex_code`)."""
    from pyspark.sql import functions as F

    s = c.cast("string")
    return F.when(s.rlike(_java(_ID18_RE)),
                  F.when(F.pmod(F.substring(s, 17, 1).cast("int"), F.lit(2)) == 1, F.lit("1")).otherwise(F.lit("2")))


def _key_col(c: Column) -> Column:
    from pyspark.sql import functions as F

    return F.upper(_clean_col(c))


def _sql_str(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _lookup_col(key: Column, mapping: Mapping[str, str]) -> Column:
    """``mapping[key]`` or NULL, with the mapping as one SQL map literal (a single expression, not one per entry)."""
    from pyspark.sql import functions as F

    if not mapping:
        return F.lit(None).cast("string")
    pairs = ", ".join(f"{_sql_str(k)}, {_sql_str(v)}" for k, v in sorted(mapping.items()))
    return F.try_element_at(F.expr(f"map({pairs})"), key)


def standardize_sex_col(c: Column, mapping: Mapping[str, str]) -> Column:
    """Spark twin of :func:`standardize_sex`: department value → GB/T 2261.1-2003 code ('0','1','2','9').

    ``c``: string (or number) Column; matched after full-width folding, trimming and upper-casing against the
    equally cleaned keys of ``mapping`` (e.g. one of ``SEX_MAPPINGS``). Output: string Column, NULL when the value
    is NULL or not in the mapping.

    Raises:
        ValueError: a mapping value is not a GB/T 2261.1 code, or two keys collide after cleaning.
    """
    return _lookup_col(_key_col(c), _clean_mapping(mapping, SEX_CODES))


def standardize_ethnic_col(c: Column) -> Column:
    """Spark twin of :func:`standardize_ethnic`: value → GB/T 3304-1991 2-digit code (string Column).

    Accepts the code ('01'), the code without its leading zero ('1'), the Chinese name with or without 族
    ('汉族', '汉'), the roman name ('Han') and the 2-letter code ('HA'), after full-width folding, trimming and
    upper-casing; anything else (and NULL) → NULL.
    """
    from pyspark.sql import functions as F

    key = _key_col(c)
    key = F.when(key.rlike("^[0-9]\\z"), F.concat(F.lit("0"), key)).otherwise(key)
    return _lookup_col(key, dict(_ethnic_aliases()))


def parse_date_col(c: Column, formats: Sequence[str] = DATE_FORMATS) -> Column:
    """Spark twin of :func:`parse_date`: string Column → date Column, strict.

    The first format (Spark datetime pattern of ``yyyy``, ``M``/``MM``, ``d``/``dd`` and literals) whose shape
    matches decides: the value is first rewritten to ``y-M-d`` by that format's regex (same regex as the Python
    version), then read with ``try_to_date(.., 'yyyy-M-d')``. Spark 4's parser (timeParserPolicy CORRECTED, the
    default) rejects impossible dates instead of rolling them over, and ``try_to_date`` returns NULL rather than
    raising whatever ``spark.sql.ansi.enabled`` is: 2023-02-30 and 2023-02-29 → NULL.

    Raises:
        ValueError: a format uses an unsupported pattern letter.
    """
    from pyspark.sql import functions as F

    s = _clean_col(c)
    canonical = None
    for fmt in formats:
        body, order = _date_pattern(fmt)
        regex = _java(body)
        ymd = "-".join(f"${order.index(name) + 1}" for name in ("y", "M", "d"))
        branch = F.regexp_replace(s, regex, ymd)
        canonical = (F.when(s.rlike(regex), branch) if canonical is None
                     else canonical.when(s.rlike(regex), branch))
    if canonical is None:
        return F.lit(None).cast("date")
    return F.try_to_date(canonical, "yyyy-M-d")


# ------------------------------------------------------------------- GB/T 2260 division codes (current / historical)

#: Lengths of division codes accepted by :func:`division_code_ok`: GB/T 2260 county level (6) and the NBS statistical
#: township (9) and village/community committee (12) levels built on it (统计用区划代码).
DIVISION_CODE_LENGTHS = (6, 9, 12)
#: Cities whose 9- and 12-digit statistical codes are listed in the repo (streets_<city>00.csv, villages_<city>00.csv):
#: a 9/12-digit code of such a city must be in the list; other cities' codes are judged on their 6-digit part only.
STATISTICAL_CITY_LISTS = ("1301",)


@cache
def _current_divisions() -> frozenset[str]:
    """Current (2023 list) 6-digit codes: county codes of areas.csv, city codes ``xxxx00`` of cities.csv and province
    codes ``xx0000`` of provinces.csv."""
    provinces = {r["code"] + "0000" for r in _read_csv(DIVISIONS_DIR / "provinces.csv")}
    cities = {r["code"] + "00" for r in _read_csv(DIVISIONS_DIR / "cities.csv")}
    return frozenset({r["code"] for r in _read_csv(DIVISIONS_DIR / "areas.csv")} | cities | provinces)


@cache
def _statistical_codes() -> tuple[frozenset[str], frozenset[str]]:
    """(9-digit township codes, 12-digit community/village codes) of the cities of ``STATISTICAL_CITY_LISTS``."""
    streets: set[str] = set()
    villages: set[str] = set()
    for city in STATISTICAL_CITY_LISTS:
        streets |= {r["code"] for r in _read_csv(DIVISIONS_DIR / f"streets_{city}00.csv")}
        villages |= {r["code"] for r in _read_csv(DIVISIONS_DIR / f"villages_{city}00.csv")}
    return frozenset(streets), frozenset(villages)


def division_status(code6: str | None) -> str | None:
    """Status of a 6-digit GB/T 2260 code: 'current' (in the 2023 list: county, city ``xxxx00`` or province
    ``xx0000`` code), 'historical' (not current, but accepted by :func:`is_known_division_code`: an abolished county
    of a current city or of a ``HISTORICAL_CITY_PREFIXES`` group, e.g. 110228 密云县), or None (unknown / malformed).
    """
    if not is_known_division_code(code6):
        return None
    return "current" if code6 in _current_divisions() else "historical"


def normalize_code(value: object) -> str | None:
    """A code value as compared by the code pack: NFKC (full-width ``１３０１０２`` → ``130102``), leading/trailing
    ``[ \\t\\n\\v\\f\\r]`` stripped, upper-cased. None → None. Spark twin: :func:`normalize_code_col` (folds the
    full-width forms and Unicode spaces only)."""
    return _clean_key(value)


def division_code_ok(value: str | None, *, historical: bool = True) -> bool:
    """True when ``value`` (after :func:`normalize_code`) is a valid GB/T 2260-based division code.

    Rule: 6, 9 or 12 ASCII digits (``DIVISION_CODE_LENGTHS``); the 6-digit county part has
    :func:`division_status` 'current' (or 'historical' too when ``historical``); and a 9-/12-digit code of a city of
    ``STATISTICAL_CITY_LISTS`` (Shijiazhuang 1301) is in streets_130100.csv / villages_130100.csv (NBS 2023
    统计用区划代码). None → False. Spark twin: :func:`division_code_ok_col`.
    """
    code = normalize_code(value)
    if code is None or len(code) not in DIVISION_CODE_LENGTHS or not code.isascii() or not code.isdigit():
        return False
    status = division_status(code[:6])
    if status is None or (status == "historical" and not historical):
        return False
    if len(code) > 6 and code[:4] in STATISTICAL_CITY_LISTS:
        streets, villages = _statistical_codes()
        return code in (streets if len(code) == 9 else villages)
    return True


# --------------------------------------------------------------------------------------------- code lists


def code_in_list(value: str | None, name: str) -> bool | None:
    """Membership of a value in a national code list (``load_code_list`` names: 'sex' GB/T 2261.1, 'marital_status'
    GB/T 2261.2, 'ethnicity' GB/T 3304, 'education' GB/T 4658, 'relation' GB/T 4761 …), compared after
    :func:`normalize_code` (no other repair: '1' is not '01'). None → None (not judged).

    Raises:
        ValueError: unknown ``name``.

    Spark twin: :func:`code_in_list_col`.
    """
    codes = _code_list(name)
    key = normalize_code(value)
    return None if key is None else key in {c for c, _ in codes}


# --------------------------------------------------------------------------------------------- phones, postcodes

#: Mainland China mobile number (11 digits, 13x–19x; MIIT numbering plan), after :func:`normalize_phone`.
MOBILE_RE = "1[3-9][0-9]{9}"
#: Postcode (邮政编码): 6 digits, leading zeros kept (e.g. 010010 呼和浩特).
POSTCODE_RE = "[0-9]{6}"
_PHONE_SEPARATORS = "[ \\-()\u00a0\u3000]"
_PHONE_PREFIX_RE = "(?:\\+86|0086|86)(1[0-9]{10})"


def normalize_phone(value: object) -> str | None:
    """A phone number as compared by the code pack: NFKC (full-width digits), spaces, hyphens and brackets removed,
    a country prefix ``+86`` / ``0086`` / ``86`` before an 11-digit number dropped: '138 1234 5678',
    '１３８１２３４５６７８', '+86 138-1234-5678' → '13812345678'. Landlines keep their area code
    ('0311-1234567' → '03111234567'). None → None; blank → ''. Spark twin: :func:`normalize_phone_col`."""
    text = normalize_code(value)
    if text is None:
        return None
    text = re.sub(_PHONE_SEPARATORS, "", text)
    m = re.fullmatch(_PHONE_PREFIX_RE, text)
    return m.group(1) if m else text


def is_mobile_phone(value: object) -> bool:
    """True when :func:`normalize_phone` of ``value`` is a mainland mobile number (``MOBILE_RE``); None → False."""
    text = normalize_phone(value)
    return text is not None and re.fullmatch(MOBILE_RE, text) is not None


def is_postcode(value: object) -> bool:
    """True when ``value`` (after :func:`normalize_code`) is 6 ASCII digits; a postcode that lost its leading zero
    ('10010') or was read as a number ('10010.0') fails. None → False."""
    text = normalize_code(value)
    return text is not None and re.fullmatch(POSTCODE_RE, text) is not None


# --------------------------------------------------------------------------- GB 32100-2015 unified social credit code

#: GB 32100-2015 code characters (digits and upper-case letters without I, O, Z, S, V), value = index.
USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
#: GB 32100-2015 weights W_i = 3^(i-1) mod 31 of the 17 body characters.
USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
#: 2 characters (registration authority, organisation type) + 6-digit division code + 9-character organisation code +
#: check character.
_USCC_RE = "[0-9A-HJ-NPQRTUWXY]{2}[0-9]{6}[0-9A-HJ-NPQRTUWXY]{10}"


def uscc_check_char(body17: str) -> str:
    """GB 32100-2015 check character of a 17-character unified social credit code body: C18 = 31 − (Σ C_i·W_i mod 31),
    31 → 0, with character values and weights of ``USCC_CHARS`` / ``USCC_WEIGHTS``.

    Raises:
        ValueError: ``body17`` is not 17 characters of ``USCC_CHARS``.
    """
    if len(body17) != 17 or any(c not in USCC_CHARS for c in body17):
        raise ValueError(f"a credit-code body is 17 characters of {USCC_CHARS}, got {body17!r}")
    total = sum(USCC_CHARS.index(c) * w for c, w in zip(body17, USCC_WEIGHTS, strict=False))
    return USCC_CHARS[(31 - total % 31) % 31]


def is_valid_uscc(value: object) -> bool:
    """True when ``value`` (after :func:`normalize_code`: NFKC, trimmed, upper-cased) is a GB 32100-2015 unified
    social credit code: 18 characters of ``USCC_CHARS`` with digits at positions 3–8, and the right check character.
    None → False. Spark twin: :func:`uscc_valid_col`."""
    code = normalize_code(value)
    if code is None or not re.fullmatch(_USCC_RE, code):
        return False
    return uscc_check_char(code[:17]) == code[17]


# ------------------------------------------------------------------------------------------- canonical form

#: Kinds of :func:`canonical_value`: the normalisation of a citizen ID, a phone number, or any code column.
CANONICAL_KINDS = ("gb11643_id", "phone", "code")


def canonical_value(value: object, kind: str) -> str | None:
    """The normalised form of a raw value: 'gb11643_id' → :func:`normalize_id` (full-width, blanks, lower-case x,
    15 → 18 digits), 'phone' → :func:`normalize_phone`, 'code' → :func:`normalize_code`. None when the value is
    missing or cannot be normalised (a float-mangled ID). A raw value that differs from its canonical value is
    *flagged* (it was repaired), never silently changed: the raw layer keeps it as delivered.

    Raises:
        ValueError: unknown ``kind``.

    Spark twin: :func:`canonical_col`.
    """
    if kind not in CANONICAL_KINDS:
        raise ValueError(f"unknown canonical kind {kind!r}; one of {', '.join(CANONICAL_KINDS)}")
    if value is None:
        return None
    if kind == "gb11643_id":
        return normalize_id(str(value)).normalized
    return normalize_phone(value) if kind == "phone" else normalize_code(value)


# ---------------------------------------------------------------------------- Spark twins of the checks above


def normalize_code_col(c: Column) -> Column:
    """Spark twin of :func:`normalize_code`: string Column → string Column (full-width folded, trimmed,
    upper-cased)."""
    return _key_col(c)


def isin_many_col(c: Column, values) -> Column:
    """``c IN (values)`` for long literal lists (division codes: thousands), boolean Column.

    PySpark's ``Column.isin`` makes one py4j round trip per value (seconds for 5,000 codes, on every call);
    here the list crosses to the JVM as one string and is split there, giving the same ``In`` expression
    (optimised to a hash set, ``InSet``). Falls back to ``isin`` when there is no classic (py4j) session or
    the list is short. Values must not contain the NUL character."""
    values = list(values)
    from pyspark.sql import SparkSession

    spark = SparkSession.getActiveSession()
    jc = getattr(c, "_jc", None)
    if len(values) < 64 or spark is None or jc is None or not hasattr(spark, "_jvm"):
        return c.isin(values)
    from pyspark.sql.column import Column

    jvm = spark._jvm
    assert jvm is not None  # a classic (py4j) session, checked above
    parts = jvm.java.util.regex.Pattern.compile("\0").splitAsStream("\0".join(values)).toList()  # stays in the JVM
    seq = jvm.org.apache.spark.api.python.PythonUtils.toSeq(parts)
    return Column(jc.isin(seq))


def division_code_ok_col(c: Column, *, historical: bool = True) -> Column:
    """Spark twin of :func:`division_code_ok`: boolean Column, never NULL (NULL input → False).

    The 6-digit part is checked with one regex literal (historical) or ``isin`` of the current codes; 9-/12-digit
    codes of ``STATISTICAL_CITY_LISTS`` cities with ``isin`` of the street/village lists (Spark turns long ``isin``
    lists into a hash set). Native expressions only."""
    from pyspark.sql import functions as F

    s = normalize_code_col(c)
    six = F.substring(s, 1, 6)
    shape = s.rlike(_java("[0-9]{6}(?:[0-9]{3}(?:[0-9]{3})?)?"))
    county = six.rlike(_division_regex()) if historical else isin_many_col(six, sorted(_current_divisions()))
    streets, villages = _statistical_codes()
    listed = F.substring(s, 1, 4).isin(list(STATISTICAL_CITY_LISTS))
    fine = (F.when(F.length(s) == 6, F.lit(True))
            .when(~listed, F.lit(True))
            .when(F.length(s) == 9, isin_many_col(s, sorted(streets)))
            .otherwise(isin_many_col(s, sorted(villages))))
    return F.coalesce(shape & county & fine, F.lit(False))


def code_in_list_col(c: Column, name: str) -> Column:
    """Spark twin of :func:`code_in_list`: boolean Column, NULL when ``c`` is NULL.

    Raises:
        ValueError: unknown ``name``.
    """
    return isin_many_col(normalize_code_col(c), [code for code, _ in _code_list(name)])


def normalize_phone_col(c: Column) -> Column:
    """Spark twin of :func:`normalize_phone` (string Column → string Column)."""
    from pyspark.sql import functions as F

    s = F.regexp_replace(normalize_code_col(c), _PHONE_SEPARATORS, "")
    return F.regexp_replace(s, _java(_PHONE_PREFIX_RE), "$1")


def mobile_phone_ok_col(c: Column) -> Column:
    """Spark twin of :func:`is_mobile_phone`: boolean Column, never NULL."""
    from pyspark.sql import functions as F

    return F.coalesce(normalize_phone_col(c).rlike(_java(MOBILE_RE)), F.lit(False))


def postcode_ok_col(c: Column) -> Column:
    """Spark twin of :func:`is_postcode`: boolean Column, never NULL."""
    from pyspark.sql import functions as F

    return F.coalesce(normalize_code_col(c).rlike(_java(POSTCODE_RE)), F.lit(False))


def uscc_valid_col(c: Column) -> Column:
    """Spark twin of :func:`is_valid_uscc`: boolean Column, never NULL. The GB 32100-2015 check character is computed
    with native arithmetic (``instr`` into ``USCC_CHARS`` for character values)."""
    from pyspark.sql import functions as F

    s = normalize_code_col(c)
    total = F.lit(0)
    for i, w in enumerate(USCC_WEIGHTS):
        total = total + (F.instr(F.lit(USCC_CHARS), F.substring(s, i + 1, 1)) - F.lit(1)) * F.lit(w)
    check = F.lit(USCC_CHARS).substr(F.pmod(F.lit(31) - F.pmod(total, F.lit(31)), F.lit(31)) + F.lit(1), F.lit(1))
    return F.coalesce(s.rlike(_java(_USCC_RE)) & (check == F.substring(s, 18, 1)), F.lit(False))


def canonical_col(c: Column, kind: str) -> Column:
    """Spark twin of :func:`canonical_value`: string Column, NULL when missing or not normalisable.

    Raises:
        ValueError: unknown ``kind``.
    """
    if kind not in CANONICAL_KINDS:
        raise ValueError(f"unknown canonical kind {kind!r}; one of {', '.join(CANONICAL_KINDS)}")
    if kind == "gb11643_id":
        return id_normalize_col(c)
    return normalize_phone_col(c) if kind == "phone" else normalize_code_col(c)


# ------------------------------------------------------------------------------- two dates of a row, documents


def dates_ordered(earlier: str | None, later: str | None, formats: Sequence[str] = DATE_FORMATS, *,
                  or_equal: bool = False) -> bool | None:
    """Whether two dates of one record are in order: ``earlier`` before ``later`` (or the same day when ``or_equal``).

    Each value is read with :func:`parse_date` and ``formats`` (mixed formats compare by calendar date:
    '2025年3月1日' < '2025-03-02'). None when either value is missing or not a real date in one of the formats:
    the pair is then not judged (the single-date rules report such values).

    Raises:
        ValueError: a format uses an unsupported pattern letter.

    Spark twin: :func:`dates_ordered_col`.
    """
    a, b = parse_date(earlier, formats), parse_date(later, formats)
    if a is None or b is None:
        return None
    return a <= b if or_equal else a < b


def dates_ordered_col(earlier: Column, later: Column, formats: Sequence[str] = DATE_FORMATS, *,
                      or_equal: bool = False) -> Column:
    """Spark twin of :func:`dates_ordered`: boolean Column, NULL when either date is NULL or does not parse
    (:func:`parse_date_col`).

    Raises:
        ValueError: a format uses an unsupported pattern letter.
    """
    a, b = parse_date_col(earlier, formats), parse_date_col(later, formats)
    return (a <= b) if or_equal else (a < b)


def unknown_fields(document: str | None, fields: Sequence[str]) -> list[str] | None:
    """Top-level keys of a JSON object text that are not in ``fields`` (the registered fields), sorted.

    None when ``document`` is missing or not a JSON object (``'[1]'``, ``'x'``): nothing to judge.
    ``unknown_fields('{"_id": 1, "a": 2, "tmp": 3}', ["_id", "a"])`` → ``['tmp']``.

    Spark twin: :func:`unknown_fields_col`.
    """
    import json

    if document is None:
        return None
    try:
        doc = json.loads(document)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    known = set(fields)
    return sorted(k for k in doc if k not in known)


def unknown_fields_col(document: Column, fields: Sequence[str]) -> Column:
    """Spark twin of :func:`unknown_fields`: ``array<string>`` Column (sorted), NULL when the value is NULL or not a
    JSON object (Spark ``json_object_keys``)."""
    from pyspark.sql import functions as F

    known = F.array(*[F.lit(f) for f in fields]).cast("array<string>") if fields else F.array().cast("array<string>")
    return F.array_sort(F.array_except(F.json_object_keys(document), known))
