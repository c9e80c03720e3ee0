"""Masking of personal data (issue #21, "Masks"): one rule per kind, in three equal forms.

Kinds and formats (issue #21: ID number ``110105********002X``, name ``张*``, phone ``138****1234``, address to
community level):

``id_no``
    Citizen ID number. GB 11643-1999 structure: 6-digit address code (GB/T 2260), 8-digit birth date, 3-digit
    sequence, 1 check character (``0-9`` or ``X``). An 18-character value ``^[0-9]{17}[0-9Xx]$`` keeps its first 6
    and last 4 characters with 8 asterisks between (``110105********002X``: region, sequence + check stay; the birth
    date goes). A 15-digit legacy number (GB 11643-1989: 6 region + 6 birth date ``YYMMDD`` + 3 sequence, no check)
    keeps the first 6 and last 3 with 6 asterisks (``110105******123``). Anything else — malformed, padded with
    spaces, full-width digits, a float-mangled ``1.1e+17`` — becomes asterisks of its length (never more than the
    rule allows). The check digit is not verified here: masking is about shape, validity is the quality gate's.
``name``
    Person name: the first character, then one ``*`` per remaining character (``张三`` → ``张*``, ``欧阳娜娜`` →
    ``欧***``, ``买买提·艾力`` → ``买*****``): the length is kept (a reader sees a two- or three-character name) and
    a compound surname is cut after its first character like any other. A one-character value becomes ``*``
    (keeping it would keep the whole name).
``phone``
    An 11-digit mainland mobile number ``^1[3-9][0-9]{9}$`` keeps the first 3 and last 4 digits (``138****1234``).
    Any other value (landline, extension, spaces, ``+86``) keeps at most its last 4 characters, asterisks for the
    rest; a value of 4 characters or fewer becomes all asterisks.
``address``
    Street address kept to community level (社区 / 村, or 居委会 / 村委会 / 居民委员会 / 村民委员会 written out):
    the longest prefix that contains no digit (ASCII or full-width) and no ``号`` and ends with one of those
    markers, followed by ``***`` when something was dropped. Sample formats (sample/population.py):
    ``<区><街道><X社区><n>号楼<u>单元<r>室`` → ``<区><街道><X社区>***``, ``<区><镇><X村><n>号`` → ``<区><镇><X村>***``.
    Without a community marker the prefix up to the street level (街道 / 镇 / 乡) is kept the same way; without
    that either, ``***``. House, building, unit and room numbers are never kept (they carry a digit or ``号``).

Every kind maps NULL to NULL and the empty string to itself. The three forms are equal on every input (tested on
real Spark): :func:`mask_value` (pure Python, for logs, messages and reports), :func:`mask_sql` (Spark SQL text of
built-in functions only, for generated views and Apache Ranger CUSTOM data-mask ``valueExpr`` with ``{col}``) and
:func:`mask_column` (a PySpark Column). :func:`scrub_text` / :func:`scrub_sql` mask ID numbers and mobile numbers
found in free text where the column is unknown (log lines, exception messages, values of non-personal columns).

:data:`PII_COLUMNS` maps every personal column name of the source registry (schemas/sources/*.yaml), the table
contracts (tables/*.yaml) and the raw/staging/quarantine tables to its kind; :data:`NOT_PERSONAL` lists the
columns whose name looks personal but are not (tests/governance/test_masking.py walks every schema).
"""
from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import Column

#: Mask kinds (issue #21).
KINDS = ("id_no", "name", "phone", "address")

#: Personal columns -> mask kind. Names as they appear in schemas/sources/*.yaml (delivered columns, header_map raw
#: names), tables/*.yaml and raw/staging/quarantine tables (raw tables carry the delivered column names).
PII_COLUMNS: dict[str, str] = {
    # ID numbers (GB 11643): hukou/hrss/civil/health persons, spouses, parents, applicants
    "id_no": "id_no",
    "applicant_id_no": "id_no",
    "husband_id_no": "id_no",
    "wife_id_no": "id_no",
    "mother_id_no": "id_no",
    "father_id_no": "id_no",
    # unified person ids are the ID number when the person has a valid one ('U' + 17 hex digits otherwise;
    # govlake/unified/linkage.py), so they are masked as ID numbers
    "person_id": "id_no",
    "person_id_1": "id_no",
    "person_id_2": "id_no",
    # person names
    "name": "name",
    "applicant_name": "name",
    "husband_name": "name",
    "wife_name": "name",
    "mother_name": "name",
    "father_name": "name",
    "child_name": "name",
    "deceased_name": "name",
    # phones
    "phone": "phone",
    "applicant_phone": "phone",
    # street addresses (household address, standard address registry, unified.address texts)
    "address": "address",
    "full_address": "address",
    "raw_address": "address",
    "normalized_address": "address",
}

#: Columns whose name looks personal (see :data:`PERSONAL_LOOKING`) but which hold no personal data, with why.
NOT_PERSONAL: dict[str, str] = {
    "district_name": "name of a district (administrative division)",
    "employer_name": "name of an employer (legal person, public in the credit register)",
    "hospital_name": "name of a hospital",
    "service_name": "name of a government service (政务服务事项)",
    "name_zh": "Chinese name of a code (code lists)",
    "address_id": "key of the standard address registry ('AD' + 10 digits), not the address text",
    "address_key": "SHA-256 of the normalised address (unified.address key), not the address text",
}

#: A column name that looks personal: the test fails when such a column is in neither map above.
PERSONAL_LOOKING = re.compile(r"id_no|person_id|name|phone|mobile|tel|addr|姓名|身份证|电话|手机|地址|住址")

# GB 11643-1999 18-character ID / GB 11643-1989 15-digit legacy ID / mainland mobile, each with its length
# (checked beside the pattern, so no '{n}' quantifier: the SQL text holds no brace but Ranger's '{col}')
_ID18 = ("^[0-9]*[0-9Xx]$", 18)
_ID15 = ("^[0-9]*$", 15)
_MOBILE = ("^1[3-9][0-9]*$", 11)
# address: digit-free, 号-free prefix ending at the community level marker (greedy: the last one), else at the
# street level; ordered alternation, the same in Python and Java regex
_NO_NUMBER = "[^0-9０-９号]*"
_PLACE = f"^({_NO_NUMBER}(?:社区|居民委员会|村民委员会|居委会|村委会|村)|{_NO_NUMBER}(?:街道|镇|乡))"
_DROPPED = "***"
# free text: an 18-character ID / 11-digit mobile not inside a longer digit run (Java and Python regex alike)
_SCRUB_ID = "(?<![0-9])([0-9]{6})[0-9]{8}([0-9]{3}[0-9Xx])(?![0-9])"
_SCRUB_MOBILE = "(?<![0-9])(1[3-9][0-9])[0-9]{4}([0-9]{4})(?![0-9])"


def _matches(shape: tuple[str, int], value: str) -> bool:
    # '$' matches before a final '\n' in Python and Java alike: the length test rules that out
    pattern, length = shape
    return len(value) == length and re.match(pattern, value) is not None


def _address_prefix(value: str) -> str:
    m = re.match(_PLACE, value)
    return m.group(1) if m else ""


def mask_value(kind: str, value: str | None) -> str | None:
    """``value`` masked by the rule of ``kind`` (module docstring; issue #21 formats). NULL stays NULL.

    Raises:
        ValueError: unknown kind.
    """
    _check_kind(kind)
    if value is None or value == "":
        return value
    n = len(value)
    if kind == "id_no":
        if _matches(_ID18, value):
            return value[:6] + "*" * 8 + value[14:]
        if _matches(_ID15, value):
            return value[:6] + "*" * 6 + value[12:]
        return "*" * n
    if kind == "name":
        return "*" if n == 1 else value[0] + "*" * (n - 1)
    if kind == "phone":
        if _matches(_MOBILE, value):
            return value[:3] + "****" + value[7:]
        return "*" * n if n <= 4 else "*" * (n - 4) + value[-4:]
    prefix = _address_prefix(value)
    if not prefix:
        return _DROPPED
    return prefix + (_DROPPED if len(value) > len(prefix) else "")


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown mask kind {kind!r}: expected one of {', '.join(KINDS)} (issue #21)")


def _sql_match(col: str, shape: tuple[str, int]) -> str:
    pattern, length = shape
    return f"(length({col}) = {length} AND {col} RLIKE '{pattern}')"


def mask_sql(kind: str, column_sql: str) -> str:
    """Spark SQL expression text masking ``column_sql`` by the rule of ``kind``; equal to :func:`mask_value`.

    Built-in functions only (``length``, ``RLIKE``, ``substr``, ``repeat``, ``concat``, ``regexp_extract``), no
    backslash and no brace in any literal, so the text can be used in generated SQL views and as an Apache Ranger
    CUSTOM data-mask ``valueExpr`` with ``column_sql='{col}'``. ``column_sql`` is pasted as is (a column name quoted
    with backticks, ``{col}``, or any expression); it is repeated, so pass a cheap expression.

    Raises:
        ValueError: unknown kind.
    """
    _check_kind(kind)
    c = column_sql
    if kind == "id_no":
        body = (f"CASE WHEN {_sql_match(c, _ID18)} THEN concat(substr({c}, 1, 6), '********', substr({c}, 15, 4)) "
                f"WHEN {_sql_match(c, _ID15)} THEN concat(substr({c}, 1, 6), '******', substr({c}, 13, 3)) "
                f"ELSE repeat('*', length({c})) END")
    elif kind == "name":
        body = (f"CASE WHEN length({c}) = 1 THEN '*' "
                f"ELSE concat(substr({c}, 1, 1), repeat('*', length({c}) - 1)) END")
    elif kind == "phone":
        body = (f"CASE WHEN {_sql_match(c, _MOBILE)} THEN concat(substr({c}, 1, 3), '****', substr({c}, 8, 4)) "
                f"WHEN length({c}) <= 4 THEN repeat('*', length({c})) "
                f"ELSE concat(repeat('*', length({c}) - 4), substr({c}, -4, 4)) END")
    else:
        prefix = f"regexp_extract({c}, '{_PLACE}', 1)"
        body = (f"CASE WHEN {prefix} = '' THEN '{_DROPPED}' "
                f"WHEN length({c}) > length({prefix}) THEN concat({prefix}, '{_DROPPED}') ELSE {prefix} END")
    return f"(CASE WHEN {c} IS NULL OR {c} = '' THEN {c} ELSE {body} END)"


def mask_column(kind: str, col: Column | str) -> Column:
    """``col`` (a Column or a column name) masked by the rule of ``kind`` as a string Column; the Column form of
    :func:`mask_sql` (same functions), usable on any input Column, not only a named one.

    Raises:
        ValueError: unknown kind.
    """
    from pyspark.sql import functions as F

    _check_kind(kind)
    x = (F.col(col) if isinstance(col, str) else col).cast("string")
    star = F.lit("*")
    n = F.length(x)
    if kind == "id_no":
        body = (F.when((n == _ID18[1]) & x.rlike(_ID18[0]),
                       F.concat(x.substr(1, 6), F.lit("*" * 8), x.substr(15, 4)))
                .when((n == _ID15[1]) & x.rlike(_ID15[0]), F.concat(x.substr(1, 6), F.lit("*" * 6), x.substr(13, 3)))
                .otherwise(F.repeat(star, n)))
    elif kind == "name":
        body = F.when(n == 1, star).otherwise(F.concat(x.substr(1, 1), F.repeat(star, n - 1)))
    elif kind == "phone":
        body = (F.when((n == _MOBILE[1]) & x.rlike(_MOBILE[0]),
                       F.concat(x.substr(1, 3), F.lit("****"), x.substr(8, 4)))
                .when(n <= 4, F.repeat(star, n))
                .otherwise(F.concat(F.repeat(star, n - 4), x.substr(-4, 4))))
    else:
        prefix = F.regexp_extract(x, _PLACE, 1)
        body = (F.when(prefix == "", F.lit(_DROPPED))
                .when(n > F.length(prefix), F.concat(prefix, F.lit(_DROPPED))).otherwise(prefix))
    return F.when(x.isNull() | (x == ""), x).otherwise(body)


def scrub_text(text: Any) -> str:
    """``text`` (any object, as ``str``) with every 18-character GB 11643-looking ID number and every 11-digit
    mobile number masked as :func:`mask_value` would (``110105********002X``, ``138****1234``).

    For log lines and exception messages where the column is unknown. A number inside a longer digit run is left
    (it is not an ID / a mobile); 15-digit legacy IDs are left too (15-digit grid codes would be masked with them);
    names and addresses in free text cannot be told from other words and are not found.
    """
    s = str(text)
    s = re.sub(_SCRUB_ID, r"\1********\2", s)
    return re.sub(_SCRUB_MOBILE, r"\1****\2", s)


def scrub_sql(column_sql: str) -> str:
    """Spark SQL text applying :func:`scrub_text` to a string expression (NULL stays NULL)."""
    inner = f"regexp_replace({column_sql}, '{_SCRUB_ID}', '$1********$2')"
    return f"regexp_replace({inner}, '{_SCRUB_MOBILE}', '$1****$2')"


def scrub_column(col: Column) -> Column:
    """Column form of :func:`scrub_sql`."""
    from pyspark.sql import functions as F

    return F.regexp_replace(F.regexp_replace(col, _SCRUB_ID, "$1********$2"), _SCRUB_MOBILE, "$1****$2")


def mask_for(column: str, value: Any) -> str | None:
    """``value`` of ``column`` as it may be shown: masked by the column's kind (:data:`PII_COLUMNS`), else
    scrubbed (:func:`scrub_text`); NULL stays NULL."""
    if value is None:
        return None
    kind = PII_COLUMNS.get(column)
    return mask_value(kind, str(value)) if kind else scrub_text(value)


def mask_key(key_columns: tuple[str, ...] | list[str], key: str | None, separator: str = "|") -> str | None:
    """A ``separator``-joined source key (``govlake.quality.rules.source_key``) as it may be shown: each part
    masked as :func:`mask_for` its key column; when the parts do not line up with ``key_columns`` (a value holding
    the separator) the whole key is masked as the first personal key column's kind, else scrubbed."""
    if key is None:
        return None
    parts = key.split(separator)
    if len(parts) == len(key_columns):
        return separator.join(mask_for(c, p) or "" for c, p in zip(key_columns, parts, strict=True))
    kind = next((PII_COLUMNS[c] for c in key_columns if c in PII_COLUMNS), None)
    return mask_value(kind, key) if kind else scrub_text(key)


def scrub_record(record: logging.LogRecord) -> logging.LogRecord:
    """``record`` with its message and exception text scrubbed (:func:`scrub_text`), in place: the message is
    formatted now (``msg`` = the scrubbed text, ``args`` dropped) only when scrubbing changed it; likewise a traceback
    holding such a number is formatted now into ``exc_text`` (which formatters print) and ``exc_info`` dropped."""
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a broken format string is logging's own error to report, left as it is
        return record
    scrubbed = scrub_text(message)
    if scrubbed != message:
        record.msg, record.args = scrubbed, None
    if record.exc_info and record.exc_info[1] is not None:
        text = logging.Formatter().formatException(record.exc_info)
        if scrub_text(text) != text:
            record.exc_text = scrub_text(text)
            record.exc_info = None  # a handler formatting exc_info again would print the clear traceback
    if record.stack_info:
        record.stack_info = scrub_text(record.stack_info)
    return record


class ScrubFilter(logging.Filter):
    """A logging filter applying :func:`scrub_record`: no ID number or mobile number reaches the handler it is
    added to in clear (:func:`install_log_scrub`; the pipeline's record factory, ``govlake.core.runlog.install``,
    scrubs every record at creation)."""

    def filter(self, record: logging.LogRecord) -> bool:
        scrub_record(record)
        return True


def install_log_scrub(logger: logging.Logger | None = None) -> None:
    """Add :class:`ScrubFilter` to every handler of ``logger`` (the root logger by default), once."""
    target = logger if logger is not None else logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, ScrubFilter) for f in handler.filters):
            handler.addFilter(ScrubFilter())
