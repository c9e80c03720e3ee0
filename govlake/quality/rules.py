"""Quality gate: expectation suites as files, row-level evaluation, quarantine, GX checkpoint.

A suite is a Great Expectations 1.x ``ExpectationSuite`` JSON file, one per table, at
``expectations/<layer>.<table>.json`` (format: ``expectations/README.md``). Every expectation
carries ``meta.rule_id`` and ``meta.action``:

* ``warn``        the row is kept; the failure is counted (:func:`rule_counts`).
* ``quarantine``  the row is moved out of the batch, with its reasons (:func:`split`).
* ``fail``        the whole batch stops (:func:`enforce_fail_rules` raises).

Two ways of running a suite, on the same rules:

* row level, in Spark (:func:`evaluate` → :func:`split`, :func:`rule_counts`): one projection that
  appends ``_failed_rules`` to every row, used to split a batch into accepted and quarantined
  rows. Nothing is lost: ``count(accepted) + count(quarantined) == count(input)``.
* the Great Expectations 1.24 validation result of the batch (the audit record), saved in the GX project's
  validation results store, one of two ways (``GOVLAKE_GX_ENGINE``, :func:`gx_engine`):

  - ``single-pass`` (default): built from the row-level pass's own counts (:func:`count_rules` →
    :func:`save_validation_result`): no further Spark job. GX's Spark engine computes each expectation's
    metrics in Spark jobs of their own (about one pass of the batch per column); the issue's speed target
    asks for as few passes as possible;
  - ``spark``: GX's own checkpoint on the same Spark DataFrame (:func:`run_checkpoint`).

  Both store the same suite under the same key with the same figures (``tests/quality/test_rules.py`` runs both
  on every rule type and compares them rule by rule). :func:`build_data_docs` then builds the Data Docs site
  once for the run's results.

Row-level semantics (the same as GX's with ``mostly=1.0``, except where stated):

* Raw tables hold every delivered value as STRING; values are compared as strings.
* NULL: only ``expect_column_values_to_not_be_null`` fails on NULL; every other rule ignores
  NULL values (a NULL is neither evaluated nor failed). The empty string is not NULL.
* ``expect_column_values_to_match_regex``: Java regex *find* (Spark ``rlike``, as GX on Spark):
  anchor the pattern (``^…$``) to match the whole value.
* ``expect_column_values_to_be_between``: the string is cast to DOUBLE (``try_cast``: Spark's
  cast trims surrounding whitespace); a value that is not a number fails.
* ``expect_column_values_to_match_strftime_format``: strict, unlike GX's lenient ``strptime``
  (which accepts ``'2025630'`` for ``%Y%m%d``): every directive needs its full width (``%Y`` four
  digits, not ``0000``; ``%m %d %H %M %S`` two digits), literals must match exactly, no surrounding
  blanks, and the value must be a real calendar date/time (``20250230`` fails).
  Supported directives: ``%Y %m %d %H %M %S %%``.
* ``expect_column_values_to_be_unique`` / ``expect_compound_columns_to_be_unique`` (within the
  batch): in every group of rows sharing a key, the FIRST row is kept and every other row of the
  group fails. First = deterministic order: with a watermark (:func:`evaluate` ``newest_first``: the raw
  object's registry ``watermark``, e.g. ``updated_at``), the latest watermark first, read as a time by
  :func:`govlake.unified.persons.source_timestamp_col` (NULL or unparsable last); then fewest failed quarantine/fail
  rules of the other (non-uniqueness) rules, then fewest failed warn rules, then the row's content: its columns in
  table order, each ascending with NULL first; copies that are identical in every column are interchangeable, and one of
  them is kept (the same one by every uniqueness rule of the suite). So the newest version of a duplicated key (of
  equally new ones, the best copy) stands, its other copies are quarantined (with a reason) and no row is lost.
  Rows whose key is NULL (all key columns NULL for a compound key) are ignored. GX itself counts *every* row of a
  duplicated key as unexpected, so the checkpoint's ``unexpected_count`` for these rules is higher than
  :func:`rule_counts` ``failed`` by one per duplicated key; both agree on pass/fail.
* ``expect_column_values_to_be_valid_gb11643_id`` (code-pack type, GB 11643-1999 citizen ID):
  ``govlake.codes.code_lists.id_is_valid_col(govlake.codes.code_lists.id_normalize_col(c))`` (Java session functions,
  :mod:`govlake.codes.udf`); the normalised value, then its validity, are projected once as hidden columns first
  (inlining it into the validity check made a 500 kB plan whose whole-stage codegen Spark disabled; the sex-agreement
  rule reads the same validity).
* Code-pack types (``govlake.codes.code_lists``; one Spark builder per rule, used both here and for the GX
  derived column): ``expect_column_values_to_be_valid_gbt2260_code`` (GB/T 2260, current or
  historical), ``expect_column_values_to_be_in_gb_code_list`` (GB/T 2261.1/2261.2/3304/4658/4761 …),
  ``expect_column_values_to_be_valid_cn_mobile``, ``expect_column_values_to_be_valid_cn_postcode``,
  ``expect_column_values_to_be_valid_gb32100_code`` (unified social credit code) and
  ``expect_column_values_to_be_normalized`` (raw value not in canonical form: full-width, blanks,
  lower-case x, 15-digit ID; a *flag*, meant for ``warn``). See ``expectations/README.md``.
* Two GovLake types beyond single columns: ``expect_column_pair_dates_to_be_ordered`` (``column_a`` before
  ``column_b``, both read with ``formats`` by ``govlake.codes.code_lists.dates_ordered_col``; a row where either date is
  NULL or unparseable is not judged) and ``expect_document_fields_to_be_registered`` (a JSON document without top-level
  fields outside ``fields``: ``govlake.codes.code_lists.unknown_fields_col``; its quarantine message names the unknown
  fields).
* ``expect_column_pair_values_a_to_be_greater_than_b`` (GX native): ``column_A > column_B`` (``>=`` with
  ``or_equal``) in the columns' own types; rows with a NULL in either are not evaluated.
* ``row_condition`` (optional kwarg of every type, a Spark SQL boolean expression): the rule evaluates only
  the rows where it is TRUE; uniqueness is then among those rows only (one current row per key). In GX such
  a rule is a derived boolean column holding the row-level result.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from govlake.core import config
from govlake.core.config import EXPECTATIONS_DIR


def _quiet_great_expectations() -> None:
    """Silence GX before it is imported: no analytics, no INFO chatter.

    Importing GX logs ~200 INFO lines "Skipping registering function …" through the stdlib
    logger ``great_expectations._docs_decorators``; under Airflow (root logger at INFO, rendered
    by structlog) they all reach the task log. Raising the ``great_expectations`` logger to
    WARNING stops them at the source. ``GX_ANALYTICS_ENABLED=false`` keeps GX from sending usage
    events (there is no network here); the file context is also saved with analytics off.
    """
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    logging.getLogger("great_expectations").setLevel(logging.WARNING)


_quiet_great_expectations()

#: Actions a rule can take on failure.
ACTIONS = ("warn", "quarantine", "fail")

#: The code-pack expectation types (not native to GX), evaluated with :mod:`govlake.codes.code_lists`:
#: GB 11643-1999 citizen ID number;
GB11643_TYPE = "expect_column_values_to_be_valid_gb11643_id"
#: a real calendar date in one of the department's formats (Spark patterns, e.g. ``yyyy年M月d日``);
VALID_DATE_TYPE = "expect_column_values_to_be_valid_date"
#: the department's sex value (mapped to GB/T 2261.1) agrees with the sex digit of the row's
#: GB 11643 ID number (the 17th digit: odd male, even female); rows without a valid ID or with a
#: sex value outside ``sex_map`` are not judged by it.
SEX_MATCHES_ID_TYPE = "expect_column_values_to_agree_with_gb11643_sex"
#: a GB/T 2260 division code (6 digits) or NBS statistical code built on it (9, 12 digits), current or
#: (``historical``, default true) abolished: :func:`govlake.codes.code_lists.division_code_ok_col`;
GBT2260_TYPE = "expect_column_values_to_be_valid_gbt2260_code"
#: a code of a national code list (``code_list``: sex GB/T 2261.1, marital_status GB/T 2261.2, ethnicity
#: GB/T 3304, education GB/T 4658, relation GB/T 4761 …): :func:`govlake.codes.code_lists.code_in_list_col`;
CODE_LIST_TYPE = "expect_column_values_to_be_in_gb_code_list"
#: a mainland mobile phone number after normalisation: :func:`govlake.codes.code_lists.mobile_phone_ok_col`;
MOBILE_TYPE = "expect_column_values_to_be_valid_cn_mobile"
#: a 6-digit postcode, leading zeros kept: :func:`govlake.codes.code_lists.postcode_ok_col`;
POSTCODE_TYPE = "expect_column_values_to_be_valid_cn_postcode"
#: a GB 32100-2015 unified social credit code with its check character: :func:`govlake.codes.code_lists.uscc_valid_col`;
USCC_TYPE = "expect_column_values_to_be_valid_gb32100_code"
#: the raw value is already in canonical form (``kind``: gb11643_id, phone, code; see
#: :func:`govlake.codes.code_lists.canonical_col`): full-width digits/letters, blanks, a lower-case ``x``, a 15-digit ID
#: fail it. Used with action ``warn``: the row is kept (the unified layer repairs it) and flagged.
CANONICAL_TYPE = "expect_column_values_to_be_normalized"
#: two dates of the same row are in order (``column_a`` before ``column_b``, or the same day with ``or_equal``), each
#: read with ``formats`` (:func:`govlake.codes.code_lists.dates_ordered_col`); rows where either date is NULL or does
#: not parse are not judged (the single-date rules report them). Birth before death, employment start before end.
DATES_ORDERED_TYPE = "expect_column_pair_dates_to_be_ordered"
#: a document (JSON object text, e.g. the ``document`` column of a MongoDB source) has no top-level field outside
#: ``fields`` (the fields registered for the collection): :func:`govlake.codes.code_lists.unknown_fields_col`; a value
#: that is not a JSON object is not judged. The quarantine message names the unknown fields.
REGISTERED_FIELDS_TYPE = "expect_document_fields_to_be_registered"
#: GX's column-pair comparison: ``column_A`` > ``column_B`` (``>=`` with ``or_equal``), compared as their Spark
#: types (dates, numbers; raw STRING columns as strings); a row where either value is NULL is not evaluated
#: (GX ``ignore_row_if="either_value_is_missing"``). E.g. an SCD2 row's ``valid_to`` after its ``valid_from``.
PAIR_GREATER_TYPE = "expect_column_pair_values_a_to_be_greater_than_b"
#: Optional kwarg of every type: a Spark SQL boolean expression; the rule evaluates only the rows where it is
#: TRUE (GX's conditional expectations; uniqueness is then among those rows only, e.g. one current row per key:
#: ``expect_column_values_to_be_unique`` on ``person_id`` with ``row_condition`` ``is_current``).
ROW_CONDITION = "row_condition"

#: Supported expectation types → (required kwargs, optional kwargs).
SUPPORTED_TYPES: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "expect_column_values_to_not_be_null": (frozenset({"column"}), frozenset()),
    "expect_column_values_to_match_regex": (frozenset({"column", "regex"}), frozenset()),
    "expect_column_values_to_be_in_set": (frozenset({"column", "value_set"}), frozenset()),
    "expect_column_values_to_be_between": (
        frozenset({"column"}), frozenset({"min_value", "max_value", "strict_min", "strict_max"})),
    "expect_column_values_to_match_strftime_format": (
        frozenset({"column", "strftime_format"}), frozenset()),
    "expect_column_values_to_be_unique": (frozenset({"column"}), frozenset()),
    "expect_compound_columns_to_be_unique": (frozenset({"column_list"}), frozenset()),
    GB11643_TYPE: (frozenset({"column"}), frozenset()),
    VALID_DATE_TYPE: (frozenset({"column", "formats"}), frozenset()),
    SEX_MATCHES_ID_TYPE: (frozenset({"column", "id_column", "sex_map"}), frozenset()),
    GBT2260_TYPE: (frozenset({"column"}), frozenset({"historical"})),
    CODE_LIST_TYPE: (frozenset({"column", "code_list"}), frozenset()),
    MOBILE_TYPE: (frozenset({"column"}), frozenset()),
    POSTCODE_TYPE: (frozenset({"column"}), frozenset()),
    USCC_TYPE: (frozenset({"column"}), frozenset()),
    CANONICAL_TYPE: (frozenset({"column", "kind"}), frozenset()),
    DATES_ORDERED_TYPE: (frozenset({"column_a", "column_b", "formats"}), frozenset({"or_equal"})),
    REGISTERED_FIELDS_TYPE: (frozenset({"column", "fields"}), frozenset()),
    PAIR_GREATER_TYPE: (frozenset({"column_A", "column_B"}), frozenset({"or_equal"})),
}

_UNIQUE_TYPES = ("expect_column_values_to_be_unique", "expect_compound_columns_to_be_unique")
#: Rules evaluated in GX over a derived boolean column (their row-level semantics differ from
#: GX's native ones, or GX has no such type): derived-column suffix per type.
_DERIVED_SUFFIX = {
    GB11643_TYPE: "gb11643_valid",
    "expect_column_values_to_match_strftime_format": "strftime_valid",
    "expect_column_values_to_be_between": "between_valid",
    VALID_DATE_TYPE: "date_valid",
    SEX_MATCHES_ID_TYPE: "sex_matches_id",
    GBT2260_TYPE: "gbt2260_valid",
    CODE_LIST_TYPE: "code_list_valid",
    MOBILE_TYPE: "mobile_valid",
    POSTCODE_TYPE: "postcode_valid",
    USCC_TYPE: "gb32100_valid",
    CANONICAL_TYPE: "canonical",
    DATES_ORDERED_TYPE: "dates_ordered",
    REGISTERED_FIELDS_TYPE: "fields_registered",
}
#: Key or value shown for NULL in ``_source_key`` and ``_messages``.
NULL_MARK = "∅"
FAILED_RULES_COL = "_failed_rules"
_DUP_IX = "__govlake_dup_ix"
_WATERMARK = "__govlake_watermark"
_ID_NORM = "__govlake_id_norm__"
_ID_VALID = "__govlake_id_valid__"


@dataclass(frozen=True)
class Rule:
    """One expectation of a suite, with what to do when a row fails it.

    Attributes:
        rule_id: stable id, e.g. ``hukou_persons.person_no.not_null`` (unique in its suite).
        expectation_type: GX snake-case type, one of :data:`SUPPORTED_TYPES`.
        kwargs: the expectation's GX kwargs (``column`` or ``column_list`` plus the type's own).
        action: ``warn``, ``quarantine`` or ``fail``.
        notes: free text (source of the rule: standard, department agreement).
    """

    rule_id: str
    expectation_type: str
    kwargs: dict = field(hash=False)
    action: str
    notes: str = ""

    @property
    def columns(self) -> tuple[str, ...]:
        """The column(s) the rule reads: ``(column,)``, the ``column_list``, or ``(column_a, column_b)`` of a
        column-pair rule."""
        if "column_list" in self.kwargs:
            return tuple(self.kwargs["column_list"])
        if "column_a" in self.kwargs:
            return (self.kwargs["column_a"], self.kwargs["column_b"])
        if "column_A" in self.kwargs:
            return (self.kwargs["column_A"], self.kwargs["column_B"])
        return (self.kwargs["column"],)

    @property
    def column_label(self) -> str:
        """The rule's column(s) as one string: ``column`` or ``a,b`` for a compound key."""
        return ",".join(self.columns)


@dataclass(frozen=True)
class Suite:
    """An expectation suite loaded from ``expectations/<name>.json``.

    Attributes:
        name: suite name, ``<layer>.<table>`` (= the file's stem).
        table: the table it validates, ``<layer>.<table>``.
        key_columns: business key columns (shown in ``_source_key`` of quarantined rows).
        rules: rules in file order (the order of ``_failed_rules``).
        version: first 12 hex digits of the SHA-256 of the suite file's bytes.
    """

    name: str
    table: str
    key_columns: tuple[str, ...]
    rules: tuple[Rule, ...]
    version: str


class FailRuleViolated(Exception):
    """A rule with action ``fail`` failed on at least one row: the batch must stop."""


# --------------------------------------------------------------------------------------------
# Suite files
# --------------------------------------------------------------------------------------------

def load_suite(name: str, directory: Path = EXPECTATIONS_DIR) -> Suite:
    """Load and check the suite file ``<directory>/<name>.json``.

    The file is a GX 1.x ExpectationSuite JSON (``expectations/README.md``): top-level ``name``
    (must equal ``name``), ``meta.table`` (default ``name``), ``meta.key_columns`` (list of
    column names, default empty), and ``expectations``: each ``{"type", "kwargs", "meta":
    {"rule_id", "action", "notes"?}, "notes"?}``.

    Returns:
        the :class:`Suite`, its ``version`` the first 12 hex digits of the file's SHA-256.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not JSON, or its name/meta is wrong, or an expectation has an
            unknown type, an unknown or missing kwarg, a bad kwarg value, a missing or duplicate
            ``rule_id`` or an unknown action; the message names the file and the rule.
    """
    path = Path(directory) / f"{name}.json"
    raw = path.read_bytes()
    version = hashlib.sha256(raw).hexdigest()[:12]
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a JSON suite file: {exc}") from exc
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: a suite file holds one JSON object")
    if doc.get("name") != name:
        raise ValueError(f"{path}: suite name {doc.get('name')!r} differs from the file name {name!r}")
    meta = doc.get("meta") or {}
    table = meta.get("table", name)
    key_columns = meta.get("key_columns", [])
    if not isinstance(table, str) or not table:
        raise ValueError(f"{path}: meta.table must be a non-empty string")
    if not isinstance(key_columns, list) or not all(isinstance(c, str) and c for c in key_columns):
        raise ValueError(f"{path}: meta.key_columns must be a list of column names")
    expectations = doc.get("expectations")
    if not isinstance(expectations, list):
        raise ValueError(f"{path}: 'expectations' must be a list")
    rules: list[Rule] = []
    seen: set[str] = set()
    for index, exp in enumerate(expectations):
        rule = _parse_rule(path, index, exp)
        if rule.rule_id in seen:
            raise ValueError(f"{path}: rule {rule.rule_id!r} (expectation #{index}): duplicate rule_id")
        seen.add(rule.rule_id)
        rules.append(rule)
    return Suite(name=name, table=table, key_columns=tuple(key_columns), rules=tuple(rules),
                 version=version)


def _parse_rule(path: Path, index: int, exp: Any) -> Rule:
    where = f"{path}: expectation #{index}"
    if not isinstance(exp, dict):
        raise ValueError(f"{where}: not a JSON object")
    meta = exp.get("meta") or {}
    rule_id = meta.get("rule_id")
    if not isinstance(rule_id, str) or not rule_id.strip():
        raise ValueError(f"{where} ({exp.get('type')}): missing meta.rule_id")
    where = f"{path}: rule {rule_id!r}"
    etype = exp.get("type")
    if etype not in SUPPORTED_TYPES:
        raise ValueError(f"{where}: unknown expectation type {etype!r}; supported: "
                         f"{', '.join(sorted(SUPPORTED_TYPES))}")
    action = meta.get("action")
    if action not in ACTIONS:
        raise ValueError(f"{where}: unknown action {action!r}; one of {', '.join(ACTIONS)}")
    kwargs = exp.get("kwargs")
    if not isinstance(kwargs, dict):
        raise ValueError(f"{where}: 'kwargs' must be an object")
    required, optional = SUPPORTED_TYPES[etype]
    optional = optional | {ROW_CONDITION}
    missing = sorted(required - kwargs.keys())
    unknown = sorted(kwargs.keys() - required - optional)
    if missing:
        raise ValueError(f"{where}: missing kwargs {missing} for {etype}")
    if unknown:
        raise ValueError(f"{where}: unsupported kwargs {unknown} for {etype} "
                         "(row-level rules have mostly=1.0 semantics)")
    _check_kwargs(where, etype, kwargs)
    notes = meta.get("notes", exp.get("notes", ""))
    if isinstance(notes, list):
        notes = "\n".join(str(n) for n in notes)
    return Rule(rule_id=rule_id, expectation_type=etype, kwargs=json.loads(json.dumps(kwargs)),
                action=action, notes=str(notes or ""))


def _check_kwargs(where: str, etype: str, kw: dict) -> None:
    for name in ("column", "column_a", "column_b", "column_A", "column_B"):
        if name in kw and (not isinstance(kw[name], str) or not kw[name]):
            raise ValueError(f"{where}: kwarg {name!r} must be a column name")
    if ROW_CONDITION in kw and (not isinstance(kw[ROW_CONDITION], str) or not kw[ROW_CONDITION].strip()):
        raise ValueError(f"{where}: kwarg 'row_condition' must be a Spark SQL boolean expression")
    if "or_equal" in kw and not isinstance(kw["or_equal"], bool):
        raise ValueError(f"{where}: kwarg 'or_equal' must be true or false")
    if etype == "expect_compound_columns_to_be_unique":
        cols = kw["column_list"]
        if not isinstance(cols, list) or len(cols) < 1 or not all(isinstance(c, str) and c for c in cols):
            raise ValueError(f"{where}: kwarg 'column_list' must be a non-empty list of column names")
    elif etype == "expect_column_values_to_match_regex":
        if not isinstance(kw["regex"], str):
            raise ValueError(f"{where}: kwarg 'regex' must be a string")
        try:
            re.compile(kw["regex"])
        except re.error as exc:
            raise ValueError(f"{where}: bad regex {kw['regex']!r}: {exc}") from exc
    elif etype == "expect_column_values_to_be_in_set":
        vs = kw["value_set"]
        if not isinstance(vs, list) or not all(isinstance(v, str) for v in vs):
            raise ValueError(f"{where}: kwarg 'value_set' must be a list of strings (raw values are strings)")
    elif etype == "expect_column_values_to_be_between":
        lo, hi = kw.get("min_value"), kw.get("max_value")
        for label, bound in (("min_value", lo), ("max_value", hi)):
            if bound is not None and (isinstance(bound, bool) or not isinstance(bound, (int, float))):
                raise ValueError(f"{where}: kwarg {label!r} must be a number")
        if lo is None and hi is None:
            raise ValueError(f"{where}: needs min_value or max_value")
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"{where}: min_value > max_value")
        for flag in ("strict_min", "strict_max"):
            if flag in kw and not isinstance(kw[flag], bool):
                raise ValueError(f"{where}: kwarg {flag!r} must be true or false")
    elif etype == "expect_column_values_to_match_strftime_format":
        try:
            strftime_to_spark(kw["strftime_format"])
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from exc
    elif etype in (VALID_DATE_TYPE, DATES_ORDERED_TYPE):
        fmts = kw["formats"]
        if not isinstance(fmts, list) or not fmts or not all(isinstance(f, str) and f for f in fmts):
            raise ValueError(f"{where}: kwarg 'formats' must be a non-empty list of Spark date patterns")
        if etype == DATES_ORDERED_TYPE:
            from govlake.codes.code_lists import parse_date  # lazy: code pack

            try:
                parse_date("", fmts)  # compiles every pattern
            except ValueError as exc:
                raise ValueError(f"{where}: {exc}") from exc
            if kw["column_a"] == kw["column_b"]:
                raise ValueError(f"{where}: column_a and column_b must be two different columns")
            if not isinstance(kw.get("or_equal", False), bool):
                raise ValueError(f"{where}: kwarg 'or_equal' must be true or false")
    elif etype == REGISTERED_FIELDS_TYPE:
        fields = kw["fields"]
        if not isinstance(fields, list) or not fields or not all(isinstance(f, str) and f for f in fields):
            raise ValueError(f"{where}: kwarg 'fields' must be a non-empty list of field names")
    elif etype == SEX_MATCHES_ID_TYPE:
        if not isinstance(kw["id_column"], str) or not kw["id_column"]:
            raise ValueError(f"{where}: kwarg 'id_column' must be a column name")
        sm = kw["sex_map"]
        if not isinstance(sm, dict) or not sm or not all(isinstance(v, str) for v in sm.values()):
            raise ValueError(f"{where}: kwarg 'sex_map' must map department values to GB/T 2261.1 codes")
    elif etype == GBT2260_TYPE:
        if not isinstance(kw.get("historical", True), bool):
            raise ValueError(f"{where}: kwarg 'historical' must be true or false")
    elif etype == CODE_LIST_TYPE:
        from govlake.codes.code_lists import CODE_LIST_NAMES  # lazy: code pack

        if kw["code_list"] not in CODE_LIST_NAMES:
            raise ValueError(f"{where}: unknown code_list {kw['code_list']!r}; one of {', '.join(CODE_LIST_NAMES)}")
    elif etype == CANONICAL_TYPE:
        from govlake.codes.code_lists import CANONICAL_KINDS  # lazy: code pack

        if kw["kind"] not in CANONICAL_KINDS:
            raise ValueError(f"{where}: unknown kind {kw['kind']!r}; one of {', '.join(CANONICAL_KINDS)}")


_STRFTIME = {"%Y": (r"(?!0000)\d{4}", "yyyy"), "%m": (r"\d{2}", "MM"), "%d": (r"\d{2}", "dd"),
             "%H": (r"\d{2}", "HH"), "%M": (r"\d{2}", "mm"), "%S": (r"\d{2}", "ss")}


def strftime_to_spark(fmt: str) -> tuple[str, str]:
    """Translate a strftime format into (anchored Java regex, Spark datetime pattern).

    Supported: ``%Y %m %d %H %M %S %%`` and literal characters (``%Y%m%d`` →
    ``('^(?!0000)\\d{4}\\d{2}\\d{2}$', 'yyyyMMdd')``).

    Raises:
        ValueError: ``fmt`` is not a string, is empty, or has an unsupported directive.
    """
    if not isinstance(fmt, str) or not fmt:
        raise ValueError("kwarg 'strftime_format' must be a non-empty string")
    regex, pattern, i = ["^"], [], 0
    while i < len(fmt):
        ch = fmt[i]
        if ch == "%":
            token = fmt[i:i + 2]
            if token in _STRFTIME:
                regex.append(_STRFTIME[token][0])
                pattern.append(_STRFTIME[token][1])
                i += 2
                continue
            if token != "%%":
                raise ValueError(f"unsupported strftime directive {token!r} in {fmt!r}; "
                                 f"supported: {' '.join(_STRFTIME)} %%")
            ch, i = "%", i + 1
        regex.append(re.escape(ch))
        pattern.append("''" if ch == "'" else (f"'{ch}'" if ch.isalpha() else ch))
        i += 1
    regex.append("$")
    return "".join(regex), "".join(pattern)


# --------------------------------------------------------------------------------------------
# Row-level evaluation (Spark)
# --------------------------------------------------------------------------------------------

def _as_string(name: str) -> Column:
    return F.col(name).cast("string")


def _applies(rule: Rule) -> Column:
    """Rows the rule evaluates: all rows for not-null, rows with a non-NULL value otherwise
    (a non-NULL key column for compound uniqueness, both values for a column pair); with a
    ``row_condition``, only the rows where it is TRUE."""
    if rule.expectation_type == "expect_column_values_to_not_be_null":
        cond = F.lit(True)
    elif rule.expectation_type == DATES_ORDERED_TYPE:
        cond = _dates_ordered(rule).isNotNull()
    elif rule.expectation_type == PAIR_GREATER_TYPE:
        cond = F.col(rule.columns[0]).isNotNull() & F.col(rule.columns[1]).isNotNull()
    else:
        not_null = [F.col(c).isNotNull() for c in rule.columns]  # never empty: load_suite checks the columns
        cond = not_null[0]
        for c_not_null in not_null[1:]:
            cond = cond | c_not_null
    if ROW_CONDITION in rule.kwargs:
        cond = cond & F.coalesce(F.expr(rule.kwargs[ROW_CONDITION]), F.lit(False))
    return cond


def _value_check(rule: Rule) -> Column:
    """For non-uniqueness rules: a boolean, TRUE when the (non-NULL) value fails."""
    et, kw = rule.expectation_type, rule.kwargs
    if et == "expect_column_values_to_not_be_null":
        return F.col(kw["column"]).isNull()
    if et == DATES_ORDERED_TYPE:
        return ~_dates_ordered(rule)  # NULL (not judged) when either date is NULL or does not parse
    if et == PAIR_GREATER_TYPE:
        a, b = F.col(kw["column_A"]), F.col(kw["column_B"])
        return ~((a >= b) if kw.get("or_equal") else (a > b))
    v = _as_string(kw["column"])
    if et == REGISTERED_FIELDS_TYPE:
        from govlake.codes.code_lists import unknown_fields_col  # lazy: code pack

        # never NULL: a value that is not a JSON object is not judged (and GX's derived column agrees)
        return F.coalesce(F.size(unknown_fields_col(v, list(kw["fields"]))) > 0, F.lit(False))
    if et == "expect_column_values_to_match_regex":
        return ~v.rlike(kw["regex"])
    if et == "expect_column_values_to_be_in_set":
        return ~v.isin(list(kw["value_set"])) if kw["value_set"] else F.lit(True)
    if et == "expect_column_values_to_be_between":
        x = v.try_cast("double")
        bad = x.isNull()
        if kw.get("min_value") is not None:
            lo = F.lit(float(kw["min_value"]))
            bad = bad | ((x <= lo) if kw.get("strict_min") else (x < lo))
        if kw.get("max_value") is not None:
            hi = F.lit(float(kw["max_value"]))
            bad = bad | ((x >= hi) if kw.get("strict_max") else (x > hi))
        return bad
    if et == "expect_column_values_to_match_strftime_format":
        regex, pattern = strftime_to_spark(kw["strftime_format"])
        return ~(v.rlike(regex) & F.try_to_timestamp(v, F.lit(pattern)).isNotNull())
    if et == GB11643_TYPE:
        # The normalised ID and its validity are columns of their own (see _with_normalized_ids): validating
        # id_normalize_col(v) inline would copy its expression into every check of the ID.
        return ~F.col(_ID_VALID + kw["column"])
    if et == VALID_DATE_TYPE:
        from govlake.codes.code_lists import parse_date_col  # lazy: code pack

        return parse_date_col(v, list(kw["formats"])).isNull()
    if et == SEX_MATCHES_ID_TYPE:
        from govlake.codes.code_lists import (  # lazy: code pack
            id_sex_code_col,
            standardize_sex_col,
        )

        norm = F.col(_ID_NORM + kw["id_column"])
        sex = standardize_sex_col(v, kw["sex_map"])
        # Only a valid ID and a known sex value can contradict each other (an unknown sex value is
        # the in-set rule's finding, not this one's).
        return F.col(_ID_VALID + kw["id_column"]) & sex.isNotNull() & (sex != id_sex_code_col(norm))
    if et == CANONICAL_TYPE and kw["kind"] == "gb11643_id":  # the ID normalised once (_with_normalized_ids)
        canon = F.col(_ID_NORM + kw["column"])
        return ~(canon.isNull() | (canon == v))
    if et in _CODE_PACK_TYPES:
        return ~_code_pack_ok(et, v, kw)
    raise ValueError(f"rule {rule.rule_id!r}: no row-level check for {et!r}")


def _dates_ordered(rule: Rule) -> Column:
    """:func:`govlake.codes.code_lists.dates_ordered_col` of a column-pair date rule: TRUE in order, FALSE not, NULL not
    judged."""
    from govlake.codes.code_lists import dates_ordered_col  # lazy: code pack

    kw = rule.kwargs
    return dates_ordered_col(_as_string(kw["column_a"]), _as_string(kw["column_b"]), list(kw["formats"]),
                             or_equal=bool(kw.get("or_equal", False)))


def _canonical_ok(v: Column, kw: dict) -> Column:
    from govlake.codes.code_lists import canonical_col  # lazy: code pack

    canon = canonical_col(v, kw["kind"])
    # not normalisable (a float-mangled ID) is the validity rule's finding, not this one's
    return canon.isNull() | (canon == v)


#: Code-pack types checked by :func:`_code_pack_ok`.
_CODE_PACK_TYPES = frozenset({GBT2260_TYPE, CODE_LIST_TYPE, MOBILE_TYPE, POSTCODE_TYPE, USCC_TYPE, CANONICAL_TYPE})


def _code_pack_ok(et: str, v: Column, kw: dict) -> Column:
    """TRUE when the value passes a code-pack rule: the :mod:`govlake.codes.code_lists` Spark builder itself, so the
    quarantine and the GX checkpoint (derived column) share one definition."""
    from govlake.codes import code_lists as codes  # lazy: code pack

    if et == GBT2260_TYPE:
        return codes.division_code_ok_col(v, historical=kw.get("historical", True))
    if et == CODE_LIST_TYPE:
        return codes.code_in_list_col(v, kw["code_list"])
    if et == MOBILE_TYPE:
        return codes.mobile_phone_ok_col(v)
    if et == POSTCODE_TYPE:
        return codes.postcode_ok_col(v)
    if et == USCC_TYPE:
        return codes.uscc_valid_col(v)
    return _canonical_ok(v, kw)


def _with_normalized_ids(df: DataFrame, suite: Suite) -> DataFrame:
    """``df`` plus two hidden columns per column with a GB 11643, sex-agreement or canonical-ID rule (none: ``df``):
    ``__govlake_id_norm__<column>`` = ``govlake.codes.code_lists.id_normalize_col(column)`` and, in a second projection
    over it, ``__govlake_id_valid__<column>`` = ``govlake.codes.code_lists.id_is_valid_col`` of the normalised value
    (boolean, never NULL). The GB 11643 rule and the sex-agreement rule read the same validity (computing it in both
    rules was about a fifth of ``raw.hukou_persons``' evaluation)."""
    columns = sorted({r.kwargs["column"] for r in suite.rules if r.expectation_type == GB11643_TYPE}
                     | {r.kwargs["id_column"] for r in suite.rules if r.expectation_type == SEX_MATCHES_ID_TYPE}
                     | {r.kwargs["column"] for r in suite.rules
                        if r.expectation_type == CANONICAL_TYPE and r.kwargs["kind"] == "gb11643_id"})
    if not columns:
        return df
    from govlake.codes.code_lists import (  # lazy: code pack
        id_is_valid_col,
        id_normalize_col,
    )

    df = df.select("*", *[id_normalize_col(_as_string(c)).alias(_ID_NORM + c) for c in columns])
    return df.select("*", *[id_is_valid_col(F.col(_ID_NORM + c)).alias(_ID_VALID + c) for c in columns])


_FLAG = "__govlake_failed_"


def _failed_conditions(df: DataFrame, suite: Suite, columns: list[str], rank_duplicates: bool = True,
                       newest_first: str | None = None) -> tuple[DataFrame, list[Column]]:
    """``(df with one hidden flag column per non-uniqueness rule, one boolean per rule of the suite)``, in suite
    order, never NULL: TRUE when the row fails. ``columns``: the input's own columns (the row content that orders
    duplicates); ``newest_first``: the watermark column that orders them first (:func:`evaluate`).

    The non-uniqueness rules are projected ONCE as flag columns before the uniqueness windows: the windows order
    duplicates by those rules' failures, and the ``_failed_rules`` array reads the same flags (computing the
    conditions inline in both places evaluated every rule twice in a suite with a uniqueness rule); the watermark's
    time is projected once with them."""
    flags: dict[str, str] = {}
    plain = []
    for i, rule in enumerate(suite.rules):
        if rule.expectation_type not in _UNIQUE_TYPES:
            flags[rule.rule_id] = f"{_FLAG}{i}"
            plain.append(F.coalesce(_applies(rule) & _value_check(rule), F.lit(False)).alias(flags[rule.rule_id]))
    newest = rank_duplicates and newest_first is not None and any(r.expectation_type in _UNIQUE_TYPES
                                                                  for r in suite.rules)
    if newest and newest_first is not None:
        from govlake.unified.persons import (
            source_timestamp_col,  # lazy: the unified layer's reading of delivered times
        )

        plain.append(source_timestamp_col(_as_string(newest_first)).alias(_WATERMARK))
    if plain:
        df = df.select("*", *plain)

    def n_failed(actions: tuple[str, ...]) -> Column:
        counted = [F.col(flags[r.rule_id]).cast("int") for r in suite.rules
                   if r.rule_id in flags and r.action in actions]
        return sum(counted[1:], counted[0]) if counted else F.lit(0)

    if rank_duplicates:
        order = [*([F.col(_WATERMARK).desc_nulls_last()] if newest else []),
                 n_failed(("quarantine", "fail")).asc(), n_failed(("warn",)).asc(),
                 *[c.asc_nulls_first() for c in _row_content(df, columns)]]
        if _DUP_IX in df.columns:
            order.append(F.col(_DUP_IX).asc())
    else:  # counts only: which copy of a key is flagged does not matter, only how many (no sort by row content)
        order = [F.lit(0)]
    out = []
    for rule in suite.rules:
        if rule.rule_id in flags:
            out.append(F.col(flags[rule.rule_id]))
            continue
        keys = [F.col(c) for c in rule.columns]
        if ROW_CONDITION in rule.kwargs:  # rank the rows meeting the condition among themselves only
            keys.append(_applies(rule))
        window = Window.partitionBy(*keys).orderBy(*order)
        out.append(F.coalesce(_applies(rule) & (F.row_number().over(window) > 1), F.lit(False)))
    return df, out


def _row_content(df: DataFrame, columns: list[str]) -> list[Column]:
    """The row's content as sort / partition keys: each of ``columns`` itself, a column Spark can neither sort nor
    group (a map, or a type holding one) as its JSON text. Comparing the columns one by one orders rows by their
    content as the row's JSON text did, without building that text for every row (to_json of every row was about
    half of a uniqueness window's time; the columns are only compared between rows that tie on the key)."""
    types = dict(df.dtypes)
    return [F.to_json(F.col(c)) if "map<" in types[c] else F.col(c) for c in columns]


def _check_columns(df: DataFrame, suite: Suite) -> None:
    present = set(df.columns)
    needed = {c for r in suite.rules for c in r.columns} | set(suite.key_columns)
    missing = sorted(needed - present)
    if missing:
        raise ValueError(f"suite {suite.name}: columns {missing} are not in the DataFrame")


def _empty_string_array() -> Column:
    return F.array().cast("array<string>")


def evaluate(df: DataFrame, suite: Suite, rank_duplicates: bool = True,
             newest_first: str | None = None) -> DataFrame:
    """Evaluate every rule of ``suite`` on every row of ``df`` (lazy: no Spark action).

    Args:
        df: a batch of ``suite.table``: the data columns (STRING in raw tables) plus any
            lineage columns (``_source``, ``_batch_id``, …). An existing ``_failed_rules``
            column is replaced.
        suite: the suite (:func:`load_suite`).
        rank_duplicates: flag, of the rows sharing a key, all but the BEST copy (module docstring), the same copy
            for every uniqueness rule: what the quarantine needs. False: all but an arbitrary one, for callers that
            only count (:func:`count_rules` gives the same counts; a suite without ``quarantine`` rules, e.g. the
            unified gate): each uniqueness window then only partitions by its key, with no sort by the rows'
            other failures and content.
        newest_first: the watermark column of the batch's object (the registry's ``watermark``, e.g.
            ``updated_at``: ``govlake.extract.stage.raw_watermark``), or None. Of the rows sharing a key, the one with
            the latest watermark is kept and the older ones fail the uniqueness rule: a department delivering two
            versions of one record in one batch means the newer. The values are the delivered text, read as times
            by :func:`govlake.unified.persons.source_timestamp_col` as the unified layer reads them (SQL text in
            Asia/Shanghai wall time, a MongoDB date as relaxed Extended JSON); NULL or unparsable ranks after any time.
            Copies with the same watermark are then ranked as without one (failures, then content).

            Recency comes BEFORE the fewest failures: when the newer copy fails a quarantine rule (a broken ID)
            and an older one is clean, the newer copy is the one that stands for the key, so it is quarantined with
            its own reasons and the older copy fails the uniqueness rule (quarantined by the raw suites): the key
            has no row in staging for the batch (the unified layer keeps what it had) until the department's
            correction is released (``python -m govlake.quality.audit release``). Ranking failures first would publish
            the older copy, a version the department has already replaced, as current: the stale value this ordering
            exists to keep out of ``unified``. It changes which copy stands, not the rule counts
            (:func:`count_rules`, :func:`tally`).

    Returns:
        ``df``'s columns plus ``_failed_rules: array<string>`` (not NULL): ids of the rules the
        row fails, in suite order; empty when none. One projection; uniqueness rules add a
        window over their key (see the module docstring for which duplicate is kept); a suite
        with two or more uniqueness rules first numbers fully identical rows (one more window,
        partitioned by all its columns) so that all its uniqueness rules keep the same copy.

    Raises:
        ValueError: a rule's column, a key column or the ``newest_first`` column is not in ``df``.
        ImportError: the suite has a GB 11643 rule and ``govlake.codes.code_lists`` lacks
            ``id_normalize_col``/``id_is_valid_col``.
    """
    if FAILED_RULES_COL in df.columns:
        df = df.drop(FAILED_RULES_COL)
    _check_columns(df, suite)
    if newest_first is not None and newest_first not in df.columns:
        raise ValueError(f"suite {suite.name}: watermark column {newest_first!r} is not in the DataFrame")
    columns = df.columns
    if rank_duplicates and sum(r.expectation_type in _UNIQUE_TYPES for r in suite.rules) > 1:
        # Number the copies of fully identical rows once, so that every uniqueness rule keeps
        # the same copy (otherwise two windows could each keep a different one).
        df = df.select("*", F.row_number().over(
            Window.partitionBy(*_row_content(df, columns)).orderBy(F.lit(0))).alias(_DUP_IX))
    df = _with_normalized_ids(df, suite)
    df, conds = _failed_conditions(df, suite, columns, rank_duplicates, newest_first)
    if conds:
        arr = F.filter(F.array(*[F.when(c, F.lit(r.rule_id)) for c, r in zip(conds, suite.rules, strict=False)]),
                       lambda x: x.isNotNull())
    else:
        arr = _empty_string_array()
    return df.select(*[F.col(c) for c in columns], arr.cast("array<string>").alias(FAILED_RULES_COL))


def _blocking_ids(suite: Suite) -> list[str]:
    return [r.rule_id for r in suite.rules if r.action in ("quarantine", "fail")]


def _blocked(suite: Suite) -> Column:
    ids = _blocking_ids(suite)
    if not ids:
        return _empty_string_array()
    return F.array_intersect(F.col(FAILED_RULES_COL), F.array(*[F.lit(i) for i in ids]))


def source_key(key_columns: tuple[str, ...] | list[str]) -> Column:
    """The business key as one string: key values joined with ``|``, NULL shown as ``∅``
    (``'∅'`` alone when the suite has no key columns)."""
    if not key_columns:
        return F.lit(NULL_MARK)
    return F.concat_ws("|", *[F.coalesce(_as_string(c), F.lit(NULL_MARK)) for c in key_columns])


def _shown(column: str) -> Column:
    """A column's value as a message may show it (issue #21): masked by its kind when it is personal
    (:data:`govlake.governance.masking.PII_COLUMNS`), else scrubbed of ID and mobile numbers (free text)."""
    from govlake.governance import masking

    kind = masking.PII_COLUMNS.get(column)
    return masking.mask_column(kind, _as_string(column)) if kind else masking.scrub_column(_as_string(column))


def _shown_key(key_columns: tuple[str, ...] | list[str]) -> Column:
    """:func:`source_key` with each key column shown as :func:`_shown` does (for messages)."""
    if not key_columns:
        return F.lit(NULL_MARK)
    return F.concat_ws("|", *[F.coalesce(_shown(c), F.lit(NULL_MARK)) for c in key_columns])


def split(evaluated: DataFrame, suite: Suite) -> tuple[DataFrame, DataFrame]:
    """Split an evaluated batch into accepted and quarantined rows (lazy: no Spark action).

    A row is quarantined when it fails at least one rule whose action is ``quarantine`` or
    ``fail``; rows failing only ``warn`` rules are accepted. Both sides filter on the same
    never-NULL condition, so ``count(accepted) + count(quarantined) == count(evaluated)``
    (given a deterministic input: persist a non-deterministic source before evaluating).

    Args:
        evaluated: output of :func:`evaluate` with the same suite.
        suite: the suite.

    Returns:
        ``(accepted, quarantined)``:

        * accepted: ``evaluated`` without ``_failed_rules`` (same columns and types as the input).
        * quarantined: ``_source_key: string`` (key columns joined with ``|``, NULL as ``∅``),
          ``_rule_ids: array<string>`` (quarantine/fail rules failed, suite order),
          ``_messages: array<string>`` (one per rule id: ``"<table>.<column>: <rule_id> failed
          for key <key>: value '<v>'"``, NULL value as ``∅``, compound values joined with ``|``;
          key and values masked, issue #21: a column of :data:`govlake.governance.masking.PII_COLUMNS` by its
          kind — ID ``110105********002X``, name ``张*``, phone ``138****1234``, address to community level —
          any other column scrubbed of ID and mobile numbers (:func:`govlake.governance.masking.scrub_sql`)),
          ``_row: string`` (JSON object of the data columns — those not starting with ``_`` —
          NULLs kept as ``null``), then every lineage column of the input (name starting with
          ``_``) unchanged. ``_source_key`` and ``_row`` stay in clear: the release workflow matches and
          re-admits rows by them, and the quarantine table is itself personal data whose readers the governance
          policies restrict (auditors see it through a masked view); messages are what reports and logs quote.

    Raises:
        ValueError: ``evaluated`` has no ``_failed_rules`` column.
    """
    if FAILED_RULES_COL not in evaluated.columns:
        raise ValueError("split() needs the output of evaluate(): no _failed_rules column")
    original = [c for c in evaluated.columns if c != FAILED_RULES_COL]
    data_cols = [c for c in original if not c.startswith("_")]
    lineage = [c for c in original if c.startswith("_")]
    blocked = _blocked(suite)
    accepted = evaluated.where(F.size(blocked) == 0).drop(FAILED_RULES_COL)
    key = source_key(suite.key_columns)
    shown_key = _shown_key(suite.key_columns)
    messages = []
    for rule in suite.rules:
        if rule.action not in ("quarantine", "fail"):
            continue
        value = F.concat_ws("|", *[F.coalesce(_shown(c), F.lit(NULL_MARK)) for c in rule.columns])
        if rule.expectation_type == REGISTERED_FIELDS_TYPE:  # name the unknown fields, not the whole document
            from govlake.codes.code_lists import unknown_fields_col  # lazy: code pack

            value = F.concat(F.lit("unknown fields "), F.array_join(
                unknown_fields_col(_as_string(rule.kwargs["column"]), list(rule.kwargs["fields"])), ", "))
        msg = F.concat(F.lit(f"{suite.table}.{rule.column_label}: {rule.rule_id} failed for key "),
                       shown_key, F.lit(": value '"), value, F.lit("'"))
        messages.append(F.when(F.array_contains(F.col("_rule_ids"), rule.rule_id), msg))
    msg_arr = (F.filter(F.array(*messages), lambda x: x.isNotNull()) if messages
               else _empty_string_array())
    quarantined = (
        evaluated.where(F.size(blocked) > 0)
        .select("*", blocked.alias("_rule_ids"))
        .select(
            key.alias("_source_key"),
            F.col("_rule_ids"),
            msg_arr.cast("array<string>").alias("_messages"),
            F.to_json(F.struct(*[F.col(c) for c in data_cols]),
                      {"ignoreNullFields": "false"}).alias("_row"),
            *[F.col(c) for c in lineage],
        )
    )
    return accepted, quarantined


def rule_counts(evaluated: DataFrame, suite: Suite) -> list[dict]:
    """Per-rule row counts of an evaluated batch, in ONE aggregation (one Spark job).

    Args:
        evaluated: output of :func:`evaluate` with the same suite.
        suite: the suite.

    Returns:
        one dict per rule, in suite order: ``rule_id``, ``expectation_type``, ``column`` (the
        column, or ``a,b`` for a compound key), ``action``, ``evaluated`` (rows the rule looked
        at: all rows for not-null, rows where both dates parse for a column-pair date rule, rows with a
        non-NULL value otherwise) and ``failed`` (rows
        whose ``_failed_rules`` has the rule), both ``int`` row counts.

    Raises:
        ValueError: ``evaluated`` has no ``_failed_rules`` column.
    """
    return _aggregate_rules(evaluated, suite)[1]


def _rule_aggregates(suite: Suite) -> list[Column]:
    """The aggregate columns of :func:`_aggregate_rules` over an evaluated batch: ``n`` (rows), then per rule i
    ``e<i>`` (rows evaluated) and ``f<i>`` (rows whose ``_failed_rules`` has the rule), all BIGINT."""
    aggs = [F.count(F.lit(1)).alias("n")]
    for i, rule in enumerate(suite.rules):
        aggs.append(F.count_if(F.coalesce(_applies(rule), F.lit(False))).alias(f"e{i}"))
        aggs.append(F.count_if(F.array_contains(F.col(FAILED_RULES_COL), rule.rule_id)).alias(f"f{i}"))
    return aggs


def _aggregate_rules(evaluated: DataFrame, suite: Suite) -> tuple[int, list[dict]]:
    """``(rows, rule_counts)`` of an evaluated batch in one aggregation."""
    if FAILED_RULES_COL not in evaluated.columns:
        raise ValueError("rule_counts() needs the output of evaluate(): no _failed_rules column")
    row = evaluated.agg(*_rule_aggregates(suite)).collect()[0]
    return int(row["n"]), [
        {"rule_id": r.rule_id, "expectation_type": r.expectation_type, "column": r.column_label,
         "action": r.action, "evaluated": int(row[f"e{i}"] or 0), "failed": int(row[f"f{i}"] or 0)}
        for i, r in enumerate(suite.rules)
    ]


@dataclass(frozen=True)
class BatchCounts:
    """What the gate counted on one evaluated batch (:func:`count_rules`).

    Attributes:
        rows: rows of the batch.
        rules: :func:`rule_counts` (one dict per rule, suite order).
        duplicated_keys: rule_id → number of distinct keys held by two or more rows, for every GX-native
            uniqueness rule without ``row_condition`` that failed (GX counts every row of such a key as unexpected,
            the gate all but the one it keeps; see :func:`save_validation_result`).
    """

    rows: int
    rules: list = field(hash=False)
    duplicated_keys: dict = field(hash=False, default_factory=dict)


def count_rules(evaluated: DataFrame, suite: Suite) -> BatchCounts:
    """The batch's row count and per-rule counts in ONE aggregation over ``evaluated`` (cache it when it is used
    again), plus, only when a GX-native uniqueness rule failed, one small aggregation over the failed rows (the
    number of duplicated keys, for GX's way of counting them). Everything the gate records
    (``ops.validation_results``) and the GX validation result (:func:`save_validation_result`) need.

    Args:
        evaluated: output of :func:`evaluate` with the same suite.
        suite: the suite.

    Returns:
        :class:`BatchCounts`.

    Raises:
        ValueError: ``evaluated`` has no ``_failed_rules`` column.
    """
    rows, counts = _aggregate_rules(evaluated, suite)
    unique = [(i, r) for i, r in enumerate(suite.rules)
              if r.expectation_type in _UNIQUE_TYPES and ROW_CONDITION not in r.kwargs and counts[i]["failed"]]
    duplicated: dict[str, int] = {}
    if unique:
        failed = evaluated.where(F.size(FAILED_RULES_COL) > 0)
        row = failed.agg(*[
            F.count_distinct(F.when(F.array_contains(F.col(FAILED_RULES_COL), r.rule_id),
                                    F.to_json(F.struct(*[F.col(c) for c in r.columns])))).alias(f"d{i}")
            for i, r in unique]).collect()[0]
        duplicated = {r.rule_id: int(row[f"d{i}"] or 0) for i, r in unique}
    return BatchCounts(rows=rows, rules=counts, duplicated_keys=duplicated)


def tally(df: DataFrame, suite: Suite) -> BatchCounts:
    """The counts of :func:`count_rules` (``count_rules(evaluate(df, suite, rank_duplicates=False), suite)``)
    without flagging rows: for a gate that only counts (the unified layer's,
    ``govlake.unified.stage.validate_unified``).

    Every non-uniqueness rule is counted in ONE aggregation over ``df`` (the rule's condition inline, as
    :func:`evaluate` projects it). Each uniqueness rule is one aggregation over its key columns only: the rows it
    evaluates (:func:`_applies`) grouped by key (NULL equal to NULL, as the window of :func:`evaluate`), failed =
    rows - keys (every copy but one), duplicated keys = keys held by two or more rows (:func:`_duplicate_counts`:
    by the key's hash first, exact). A window over the key moves and sorts whole rows; a grouping moves the key
    columns, partially aggregated (figures in ``benchmarks/README.md``). ``df`` is read once, plus once per
    uniqueness rule (twice when some of its key hashes are shared): cache it.

    Returns:
        :class:`BatchCounts` equal to :func:`count_rules`'s on the unranked evaluation (``duplicated_keys`` for the
        same rules: GX-native uniqueness rules without ``row_condition`` that failed).

    Raises:
        ValueError: a rule's column or a key column is not in ``df``.
    """
    if FAILED_RULES_COL in df.columns:
        df = df.drop(FAILED_RULES_COL)
    _check_columns(df, suite)
    checked = _with_normalized_ids(df, suite)
    aggs = [F.count(F.lit(1)).alias("n")]
    for i, rule in enumerate(suite.rules):
        applies = F.coalesce(_applies(rule), F.lit(False))
        aggs.append(F.count_if(applies).alias(f"e{i}"))
        if rule.expectation_type not in _UNIQUE_TYPES:
            aggs.append(F.count_if(F.coalesce(_applies(rule) & _value_check(rule), F.lit(False))).alias(f"f{i}"))
    row = checked.agg(*aggs).collect()[0]
    failed: dict[int, int] = {}
    duplicated: dict[str, int] = {}
    for i, rule in enumerate(suite.rules):
        if rule.expectation_type not in _UNIQUE_TYPES:
            failed[i] = int(row[f"f{i}"] or 0)
            continue
        extra, dup = _duplicate_counts(df.where(F.coalesce(_applies(rule), F.lit(False))), rule.columns)
        failed[i] = extra
        if failed[i] and ROW_CONDITION not in rule.kwargs:
            duplicated[rule.rule_id] = dup
    counts = [{"rule_id": r.rule_id, "expectation_type": r.expectation_type, "column": r.column_label,
               "action": r.action, "evaluated": int(row[f"e{i}"] or 0), "failed": failed[i]}
              for i, r in enumerate(suite.rules)]
    return BatchCounts(rows=int(row["n"]), rules=counts, duplicated_keys=duplicated)


def _duplicate_counts(rows: DataFrame, key: tuple[str, ...]) -> tuple[int, int]:
    """``(rows - distinct keys, keys held by two or more rows)`` of ``rows`` grouped by the ``key`` columns (NULL
    equal to NULL, as ``GROUP BY``), exactly, in two steps:

    1. group by the key's 64-bit ``xxhash64`` only: distinct hashes mean distinct keys, so when no hash is shared
       (the usual case of a unified table's key) both counts are 0. Grouping a BIGINT instead of the key's strings
       moves and hashes less (figures in ``benchmarks/README.md``);
    2. otherwise the rows whose hash is shared (every copy of a duplicated key is among them, with the rare rows
       whose distinct keys collide, and the NULL-holding keys, whose NULL parts the hash skips) grouped by the key
       columns themselves: a second pass, so a table with many duplicates (a raw batch) pays more than one
       grouping."""
    hashed = rows.select(*key, F.xxhash64(*key).alias("__govlake_key_hash"))
    shared = hashed.groupBy("__govlake_key_hash").count().where("count > 1").select("__govlake_key_hash")
    if not shared.limit(1).collect():
        return 0, 0
    # no broadcast hint: a state with many duplicated keys has many shared hashes; Spark sizes the join itself
    per_key = hashed.join(shared, "__govlake_key_hash", "left_semi").groupBy(*key).count()
    row = per_key.agg(F.sum(F.col("count") - 1).alias("extra"),
                      F.count_if(F.col("count") > 1).alias("dup")).collect()[0]
    return int(row["extra"] or 0), int(row["dup"] or 0)


def enforce_fail_rules(counts: list[dict], suite: Suite) -> None:
    """Stop the batch when a ``fail``-action rule failed on any row.

    Args:
        counts: output of :func:`rule_counts`.
        suite: the suite the counts are for.

    Raises:
        FailRuleViolated: naming the suite (and its version), each failed fail-rule and its
            failed row count.
    """
    bad = [c for c in counts if c["action"] == "fail" and c["failed"] > 0]
    if bad:
        detail = "; ".join(f"rule {c['rule_id']} failed for {c['failed']} of {c['evaluated']} rows"
                           for c in bad)
        raise FailRuleViolated(f"suite {suite.name} (version {suite.version}): {detail}")


# --------------------------------------------------------------------------------------------
# Great Expectations checkpoint
# --------------------------------------------------------------------------------------------

GX_DATASOURCE = "govlake_spark"
GX_BATCH_DEFINITION = "whole_batch"


def derived_column_names(suite: Suite) -> dict[str, str]:
    """rule_id → name of the derived boolean column validated in GX for the rules whose
    row-level semantics GX lacks (GB 11643, strict strftime, numeric-between on strings) and for
    every rule with a ``row_condition`` (suffix ``when``): ``<column>__<suffix>`` (``id_no__gb11643_valid``;
    several columns joined with ``__``: ``birth_date__death_date__dates_ordered``), with ``_<n>`` added on a clash."""
    names: dict[str, str] = {}
    taken: set[str] = set()
    for rule in suite.rules:
        suffix = "when" if ROW_CONDITION in rule.kwargs else _DERIVED_SUFFIX.get(rule.expectation_type)
        if suffix is None:
            continue
        base = f"{'__'.join(rule.columns)}__{suffix}"
        name, n = base, 2
        while name in taken:
            name, n = f"{base}_{n}", n + 1
        taken.add(name)
        names[rule.rule_id] = name
    return names


def _gx_frame(df: DataFrame, suite: Suite, newest_first: str | None = None) -> DataFrame:
    """``df`` plus one boolean column per derived rule: NULL when the rule does not judge the row (a NULL value,
    ignored by GX like every non-not-null rule; for a column-pair date rule either date NULL or unparseable),
    TRUE when it passes, FALSE when it fails. A rule with a ``row_condition`` takes its row-level result from
    :func:`evaluate` (NULL where the rule does not apply; ``newest_first`` as there), so conditional uniqueness
    means the same in GX as in the gate."""
    derived = derived_column_names(suite)
    columns = df.columns
    conditional = [r for r in suite.rules if ROW_CONDITION in r.kwargs]
    if conditional:
        df = evaluate(df, suite, newest_first=newest_first)
    df = _with_normalized_ids(df, suite)
    extra = []
    for rule in suite.rules:
        if rule in conditional:
            col = F.when(_applies(rule), ~F.array_contains(F.col(FAILED_RULES_COL), rule.rule_id))
            extra.append(col.alias(derived[rule.rule_id]))
        elif rule.rule_id in derived:
            col = F.when(~F.coalesce(_applies(rule), F.lit(False)), F.lit(None).cast("boolean")) \
                .otherwise(~F.coalesce(_value_check(rule), F.lit(True)))
            extra.append(col.alias(derived[rule.rule_id]))
    return df.select(*[F.col(c) for c in columns], *extra)


def evaluate_with_derived(df: DataFrame, suite: Suite, newest_first: str | None = None) -> DataFrame:
    """:func:`evaluate` plus the GX derived boolean columns of :func:`derived_column_names` (lazy: no
    Spark action; ``newest_first`` as :func:`evaluate`'s), so that ONE cached frame serves the row-level gate
    (:func:`rule_counts`, :func:`split`, after dropping the derived columns) and the GX checkpoint
    (:func:`run_checkpoint` accepts it as it is): the batch is read and every rule evaluated once.

    Returns:
        ``df``'s columns, ``_failed_rules: array<string>`` (see :func:`evaluate`), then one ``boolean``
        column per derived rule (NULL when the value is NULL, TRUE when it passes, FALSE when it fails).

    Raises:
        ValueError: a rule's column, a key column or the ``newest_first`` column is not in ``df``.
    """
    return _gx_frame(evaluate(df, suite, newest_first=newest_first), suite, newest_first)


def _gx_expectation_configs(suite: Suite) -> list[dict]:
    """The suite's rules as GX expectation configurations (dicts of ExpectationConfiguration
    arguments): native types as they are, derived rules as ``expect_column_values_to_be_in_set``
    ``[true]`` on their derived column, each with meta ``rule_id``/``action``, notes
    ``"<rule_id> [<action>]: <notes>"`` (shown in Data Docs) and severity ``warning`` (warn) or
    ``critical`` (quarantine, fail)."""
    derived = derived_column_names(suite)
    configs = []
    for rule in suite.rules:
        meta: dict[str, Any] = {"rule_id": rule.rule_id, "action": rule.action}
        kwargs = dict(rule.kwargs)
        etype = rule.expectation_type
        description = None
        if etype == PAIR_GREATER_TYPE:
            kwargs["ignore_row_if"] = "either_value_is_missing"
        if rule.rule_id in derived:
            meta.update({"govlake_type": etype, "govlake_kwargs": dict(rule.kwargs)})
            if ROW_CONDITION in rule.kwargs:
                shown = {k: v for k, v in rule.kwargs.items() if k != ROW_CONDITION}
                what = f"passes {etype} {json.dumps(shown, ensure_ascii=False)} where {rule.kwargs[ROW_CONDITION]}"
            elif etype == GB11643_TYPE:
                what = "is a valid GB 11643 citizen ID number (length, date, check digit, division)"
            elif etype == "expect_column_values_to_match_strftime_format":
                what = f"matches the date format {rule.kwargs['strftime_format']} strictly"
            elif etype == VALID_DATE_TYPE:
                what = f"is a real calendar date in a format of {', '.join(rule.kwargs['formats'])}"
            elif etype == SEX_MATCHES_ID_TYPE:
                what = f"agrees with the sex digit of the GB 11643 ID in {rule.kwargs['id_column']}"
            elif etype == GBT2260_TYPE:
                what = ("is a GB/T 2260 division code (6/9/12 digits; "
                        + ("current or historical list)" if rule.kwargs.get("historical", True) else "current list)"))
            elif etype == CODE_LIST_TYPE:
                what = f"is a code of the national code list {rule.kwargs['code_list']}"
            elif etype == MOBILE_TYPE:
                what = "is a mainland mobile phone number (11 digits, 13x-19x, after normalisation)"
            elif etype == POSTCODE_TYPE:
                what = "is a 6-digit postcode"
            elif etype == USCC_TYPE:
                what = "is a GB 32100-2015 unified social credit code (check character)"
            elif etype == DATES_ORDERED_TYPE:
                what = (f"is {'on or ' if rule.kwargs.get('or_equal') else ''}before {rule.kwargs['column_b']} "
                        f"(dates in a format of {', '.join(rule.kwargs['formats'])}; rows where either date is "
                        "missing or unparseable are not judged)")
            elif etype == REGISTERED_FIELDS_TYPE:
                what = f"has only the registered top-level fields {', '.join(rule.kwargs['fields'])}"
            elif etype == CANONICAL_TYPE:
                what = (f"is already in canonical {rule.kwargs['kind']} form"
                        " (no full-width, blanks, lower-case x, 15-digit ID)")
            else:
                lo, hi = rule.kwargs.get("min_value"), rule.kwargs.get("max_value")
                what = (f"is a number {'>' if rule.kwargs.get('strict_min') else '>='} {lo}"
                        if lo is not None else "is a number")
                if hi is not None:
                    what += f"{' and' if lo is not None else ''} " \
                            f"{'<' if rule.kwargs.get('strict_max') else '<='} {hi}"
            subject = rule.kwargs["column_a"] if etype == DATES_ORDERED_TYPE else rule.column_label
            description = (f"{rule.rule_id} [{rule.action}]: {subject} {what} "
                           f"(derived column {derived[rule.rule_id]} must be true)").replace("$", "")
            etype, kwargs = "expect_column_values_to_be_in_set", {
                "column": derived[rule.rule_id], "value_set": [True]}
        notes = f"{rule.rule_id} [{rule.action}]" + (f": {rule.notes}" if rule.notes else "")
        configs.append({"type": etype, "kwargs": kwargs, "meta": meta,
                        "notes": notes, "description": description,
                        "severity": "warning" if rule.action == "warn" else "critical"})
    return configs


def _get_or_add(getter, adder):
    try:
        return getter()
    except (LookupError, ValueError):
        return adder()


@contextmanager
def gx_project_lock(reports_dir: Path):
    """Exclusive lock on the GX project at ``<reports_dir>/gx`` (:func:`govlake.core.fsio.file_lock` on
    ``<reports_dir>/gx/.govlake.lock``, created if needed): every read or write of the project (its context, stores,
    Data Docs site) happens under it. The Airflow DAG runs the departments' validate tasks, the ``data_docs`` task and
    unify (its unified results and pages) in parallel processes, the validate stage validates tables in parallel
    threads, and GX is not safe to use from two at once (a build could read a result being written, two builds write
    one index, and GX's module-level YAML parsers fail when two threads parse at once). ``flock`` excludes other
    threads of the process too (each holder opens the lock file anew). Not re-entrant: do not nest. Blocks until the
    lock is free."""
    from govlake.core import fsio

    with fsio.file_lock(Path(reports_dir).resolve() / "gx" / ".govlake.lock"):
        yield


def _gx_context(reports_dir: Path):
    """The FILE data context at ``<reports_dir>/gx`` (:func:`govlake.quality.gx.open_context`: the project file created
    on first use, recovered when a crash left it broken; every file written atomically; analytics and progress bars
    off). Call it, and use the context, under :func:`gx_project_lock`."""
    _quiet_great_expectations()
    from govlake.quality import gx as gxproject

    return gxproject.open_context(Path(reports_dir).resolve() / "gx")


def _save_gx_suite(context, suite: Suite):
    """Store ``suite`` in the context as a GX ``ExpectationSuite`` (replacing the stored one: the file is the truth)
    with :func:`_gx_expectation_configs`; returns the stored suite (its expectations carry GX ids)."""
    from great_expectations.core import ExpectationSuite
    from great_expectations.expectations.expectation_configuration import (
        ExpectationConfiguration,
    )

    gx_suite = ExpectationSuite(
        name=suite.name,
        expectations=[ExpectationConfiguration(**cfg).to_domain_obj()
                      for cfg in _gx_expectation_configs(suite)],
        meta={"table": suite.table, "key_columns": list(suite.key_columns),
              "govlake_suite_version": suite.version},
    )
    return context.suites.add_or_update(gx_suite)


def _checkpoint_summary(context, key, vr, suite: Suite, reports_dir: Path, data_docs: bool) -> dict:
    """The return value of :func:`run_checkpoint` / :func:`save_validation_result` for the stored result ``vr``."""
    backend = context.validation_results_store.store_backend
    results_path = Path(backend.full_base_directory) / backend._convert_key_to_filepath(key.to_tuple())
    docs_index = _docs_index(context, reports_dir)
    # GX's site mirrors the results store: validations/<suite>/<run name>/<run time>/<batch>.json has its page at
    # <site>/validations/<same>.html (built now with data_docs, else by build_data_docs afterwards)
    page = (docs_index.parent / "validations"
            / results_path.relative_to(backend.full_base_directory).with_suffix(".html"))
    for path in (results_path, docs_index, page) if data_docs else (results_path,):
        if not path.is_file():
            raise FileNotFoundError(f"GX did not write {path}")
    severity = vr.get_max_severity_failure()
    return {
        "success": bool(vr.success),
        "statistics": dict(vr.statistics),
        "results_path": str(results_path),
        "data_docs_index": str(docs_index),
        "data_docs_page": str(page),
        "suite_version": suite.version,
        "max_severity": severity.value if severity is not None else None,
        "expectations": expectation_figures(vr),
    }


def expectation_figures(vr) -> list[dict]:
    """Per rule of a GX ``ExpectationSuiteValidationResult`` (stored or just computed): ``rule_id``, ``action``,
    ``type`` (the GovLake type of a derived rule), ``success`` (bool), ``element_count``, ``unexpected_count`` and
    ``missing_count`` (rows; 0 when GX reports none, as for not-null), in the result's order."""
    out = []
    for res in vr.results:
        cfg = res.expectation_config
        meta = cfg.meta or {}
        r = res.result or {}
        out.append({
            "rule_id": meta.get("rule_id"), "action": meta.get("action"),
            "type": meta.get("govlake_type", cfg.type), "success": bool(res.success),
            "element_count": r.get("element_count"), "unexpected_count": r.get("unexpected_count"),
            "missing_count": r.get("missing_count", 0),
        })
    return out


def gx_engine(env: Mapping[str, str] | None = None) -> str:
    """``GOVLAKE_GX_ENGINE`` (default ``single-pass``): ``single-pass`` stores the GX validation result built from
    the gate's own one-pass counts (:func:`save_validation_result`); ``spark`` runs GX's own checkpoint on the
    batch (:func:`run_checkpoint`: several Spark jobs per suite; the second opinion, see
    ``govlake.quality.audit crosscheck``).

    Raises:
        ValueError: another value.
    """
    return config.gx_engine(env)


def _percent(part: int, whole: int) -> float | None:
    return 100.0 * part / whole if whole else None


def _gx_result(rule: Rule, count: dict, rows: int, duplicated_keys: int) -> tuple[bool, dict]:
    """``(success, result)`` of one rule as GX 1.24 reports it in result format BASIC with no partial values:
    ``element_count`` = the batch's rows; ``missing_count`` = rows the rule does not judge (NULL value, NULL in a
    pair, row condition not met); ``unexpected_count`` = rows failing it, except GX-native uniqueness, where GX
    counts EVERY row of a duplicated key (= rows failing + one kept row per duplicated key); percents of the
    judged rows (``unexpected_percent``) and of all rows (``unexpected_percent_total``). Not-null (native, without
    ``row_condition``) reports no missing values (its unexpected rows are the NULLs), as GX does; a rule GX checks
    over a derived column (:func:`derived_column_names`) reports the rows it does not judge as missing."""
    unexpected = int(count["failed"])
    if rule.expectation_type in _UNIQUE_TYPES and ROW_CONDITION not in rule.kwargs:
        unexpected += duplicated_keys
    if rule.expectation_type == "expect_column_values_to_not_be_null" and ROW_CONDITION not in rule.kwargs:
        return unexpected == 0, {"element_count": rows, "unexpected_count": unexpected,
                                 "unexpected_percent": _percent(unexpected, rows), "partial_unexpected_list": []}
    judged = int(count["evaluated"])
    missing = rows - judged
    return unexpected == 0, {
        "element_count": rows, "missing_count": missing, "missing_percent": _percent(missing, rows),
        "unexpected_count": unexpected, "unexpected_percent": _percent(unexpected, judged),
        "unexpected_percent_total": _percent(unexpected, rows),
        "unexpected_percent_nonmissing": _percent(unexpected, judged), "partial_unexpected_list": []}


def save_validation_result(suite: Suite, counts: BatchCounts, batch_id: str, reports_dir: Path,
                           run_time: datetime | None = None, data_docs: bool = False) -> dict:
    """Store the Great Expectations validation result of one batch, built from the gate's own single-pass counts
    (:func:`count_rules`), in the FILE data context at ``<reports_dir>/gx``, where :func:`run_checkpoint` stores
    GX's own: the same suite (stored as :func:`run_checkpoint` stores it), the same key (suite, run name
    ``batch_id``, run time, batch ``govlake_spark-<table>``), the same result format (BASIC, no partial values).
    No Spark job: GX's Spark engine computes each expectation's metrics in jobs of their own (about one pass of
    the batch per column), the gate evaluated every rule in one pass already. ``tests/quality/test_rules.py`` proves
    on inline batches that both give the same ``success``, ``element_count``, ``missing_count`` and
    ``unexpected_count`` for every rule type; ``python -m govlake.quality.audit crosscheck`` does it on a stored batch.

    The result's ``meta`` carries what GX's does (run id, validation time, active batch definition of the
    datasource ``govlake_spark`` / asset ``suite.table``) plus ``govlake``: ``{"engine": "single-pass", "rows",
    "suite_version"}``; its ``batch_spec`` names the engine, the rows and the suite version, which the result's
    Data Docs page shows under "Batch Spec".

    Args:
        suite: the suite the counts are for.
        counts: :func:`count_rules` of the batch.
        batch_id: the batch's id (GX run name), e.g. ``hukou.persons:2025-06-30``.
        reports_dir: folder of reports (``Settings.reports_dir``).
        run_time: GX run time (default: now); pass it for reproducible paths.
        data_docs: also build the Data Docs pages of this result and the index (:func:`build_data_docs`).

    Returns:
        as :func:`run_checkpoint`.

    Raises:
        ValueError: ``counts`` are not of ``suite`` (other rule ids).
        FileNotFoundError: the result JSON or (``data_docs``) the Data Docs index was not written.
    """
    by_id = {c["rule_id"]: c for c in counts.rules}
    if sorted(by_id) != sorted(r.rule_id for r in suite.rules):
        raise ValueError(f"save_validation_result: the counts are not those of suite {suite.name}")
    with gx_project_lock(reports_dir):  # parallel validate tasks, unify and the data_docs task
        # GX imported under the lock: two threads importing it at once can meet its import cycles half-initialised
        from great_expectations import __version__ as gx_version
        from great_expectations.core import (
            ExpectationSuiteValidationResult,
            ExpectationValidationResult,
        )
        from great_expectations.core.run_identifier import RunIdentifier
        from great_expectations.data_context.types.resource_identifiers import (
            ExpectationSuiteIdentifier,
            ValidationResultIdentifier,
        )

        context = _gx_context(reports_dir)
        gx_suite = _save_gx_suite(context, suite)
        run_id = RunIdentifier(run_name=batch_id, run_time=run_time)
        batch_identifier = f"{GX_DATASOURCE}-{suite.table}"
        results = []
        for rule, expectation in zip(suite.rules, gx_suite.expectations, strict=False):
            success, result = _gx_result(rule, by_id[rule.rule_id], counts.rows,
                                         counts.duplicated_keys.get(rule.rule_id, 0))
            config = expectation.configuration
            config.kwargs["batch_id"] = batch_identifier
            results.append(ExpectationValidationResult(
                success=success, expectation_config=config, result=result,
                exception_info={"raised_exception": False, "exception_message": None, "exception_traceback": None}))
        n_ok = sum(1 for r in results if r.success)
        statistics = {"evaluated_expectations": len(results), "successful_expectations": n_ok,
                      "unsuccessful_expectations": len(results) - n_ok,
                      "success_percent": _percent(n_ok, len(results))}
        vr = ExpectationSuiteValidationResult(
            success=n_ok == len(results), results=results, suite_name=suite.name, statistics=statistics,
            batch_id=batch_identifier,
            meta={"great_expectations_version": gx_version,
                  "run_id": run_id, "validation_time": run_id.run_time,
                  # shown on the result's Data Docs page (its "Batch Spec"): who computed the figures
                  "batch_spec": {"batch_data": "SparkDataFrame",
                                 "evaluated_by": "GovLake single pass (govlake.quality.rules.evaluate + count_rules)",
                                 "rows": counts.rows, "suite_version": suite.version},
                  "batch_parameters": {"dataframe": "<DATAFRAME>"},
                  "active_batch_definition": {"datasource_name": GX_DATASOURCE, "data_connector_name": "fluent",
                                              "data_asset_name": suite.table,
                                              "batch_identifiers": {"dataframe": "<DATAFRAME>"}},
                  "govlake": {"engine": "single-pass", "rows": counts.rows, "suite_version": suite.version}})
        key = ValidationResultIdentifier(expectation_suite_identifier=ExpectationSuiteIdentifier(name=suite.name),
                                         run_id=run_id, batch_identifier=batch_identifier)
        context.validation_results_store.set(key, vr)
        if data_docs:
            _build_data_docs(context, reports_dir, [batch_id])
        return _checkpoint_summary(context, key, vr, suite, reports_dir, data_docs)


def run_checkpoint(spark: SparkSession, df: DataFrame, suite: Suite, batch_id: str, reports_dir: Path,
                   run_time: datetime | None = None, data_docs: bool = True) -> dict:
    """Validate ``df`` with Great Expectations 1.24 and (``data_docs``) update the Data Docs site.

    Uses a FILE data context at ``<reports_dir>/gx`` (created on first use; later runs reuse
    the datasource ``govlake_spark``, the dataframe asset ``suite.table``, the batch definition
    ``whole_batch``, the validation definition and checkpoint named ``suite.name``; the GX suite
    is replaced by the current file's rules on every run). Analytics and progress bars are off.
    Partial unexpected value lists are not stored (``partial_unexpected_count`` 0): citizen IDs
    and phone numbers stay out of the Data Docs site; the quarantine table has the rows.
    GX-native rules run as they are; GB 11643, strftime and between rules run as
    ``expect_column_values_to_be_in_set [true]`` over derived boolean columns with the
    row-level semantics of :func:`evaluate` (see :func:`derived_column_names`), so Data Docs
    list every rule of the suite, each with its ``rule_id``. Result format ``BASIC`` (the smallest
    that keeps ``element_count`` and ``unexpected_count``; GX's ``SUMMARY`` adds value counts and index
    lists, i.e. more Spark jobs, that the site did not show anyway with no partial values).

    Args:
        spark: the SparkSession of ``df`` (GX reuses it).
        df: the batch (``_failed_rules`` is dropped if present); or the output of
            :func:`evaluate_with_derived` (cache it first: GX runs several Spark jobs on it), whose derived
            columns are then used as they are instead of being computed again.
        suite: the suite.
        batch_id: the batch's id, used as GX run name.
        reports_dir: folder of reports (``Settings.reports_dir``).
        run_time: GX run time (default: now, as GX does); pass it for reproducible paths.
        data_docs: update the Data Docs site with this result and rebuild its index (GX
            ``UpdateDataDocsAction``). False: only save the result; build the site once for all the
            run's tables afterwards with :func:`build_data_docs` (the index build reads the result of every
            page on the site, so once per run instead of once per table).

    Returns:
        ``{"success": bool, "statistics": {evaluated_expectations, successful_expectations,
        unsuccessful_expectations, success_percent}, "results_path": str (saved validation
        result JSON), "data_docs_index": str (Data Docs index.html; with ``data_docs`` False, where
        :func:`build_data_docs` writes it), "suite_version": str,
        "max_severity": "critical"|"warning"|None, "expectations": [{rule_id, action, type,
        success, element_count, unexpected_count}]}``.

    Raises:
        ValueError: a rule's column is not in ``df``.
        FileNotFoundError: GX did not write the result JSON or (``data_docs``) the Data Docs index.
    """
    _quiet_great_expectations()
    if FAILED_RULES_COL in df.columns:
        df = df.drop(FAILED_RULES_COL)
    _check_columns(df, suite)
    derived = list(derived_column_names(suite).values())
    gx_df = df if derived and set(derived) <= set(df.columns) else _gx_frame(df.drop(*derived), suite)

    with gx_project_lock(reports_dir):
        # GX imported under the lock: two threads importing it at once can meet its import cycles half-initialised
        from great_expectations.checkpoint import Checkpoint
        from great_expectations.checkpoint.actions import UpdateDataDocsAction
        from great_expectations.core import ValidationDefinition
        from great_expectations.core.run_identifier import RunIdentifier

        context = _gx_context(reports_dir)
        datasource = _get_or_add(lambda: context.data_sources.get(GX_DATASOURCE),
                                 lambda: context.data_sources.add_spark(GX_DATASOURCE, persist=False))
        asset = _get_or_add(lambda: datasource.get_asset(suite.table),
                            lambda: datasource.add_dataframe_asset(suite.table))
        batch_definition = _get_or_add(lambda: asset.get_batch_definition(GX_BATCH_DEFINITION),
                                       lambda: asset.add_batch_definition_whole_dataframe(GX_BATCH_DEFINITION))
        gx_suite = _save_gx_suite(context, suite)

        if suite.name in {v.name for v in context.validation_definitions.all()}:
            validation = context.validation_definitions.get(suite.name)
        else:
            validation = context.validation_definitions.add(
                ValidationDefinition(name=suite.name, data=batch_definition, suite=gx_suite))
        # add_or_update: a checkpoint saved by an older GovLake (SUMMARY, docs action on every run) is replaced
        checkpoint = context.checkpoints.add_or_update(Checkpoint(
            name=suite.name, validation_definitions=[validation],
            actions=[UpdateDataDocsAction(name="update_data_docs")] if data_docs else [],
            result_format={"result_format": "BASIC", "partial_unexpected_count": 0},
        ))

        result = checkpoint.run(batch_parameters={"dataframe": gx_df},
                                run_id=RunIdentifier(run_name=batch_id, run_time=run_time))
        (key, vr), = result.run_results.items()
        summary = _checkpoint_summary(context, key, vr, suite, reports_dir, data_docs)
        if data_docs:  # GX's UpdateDataDocsAction built the pages with their CDN links
            _offline_site(Path(summary["data_docs_index"]))
        return summary


def _docs_index(context, reports_dir: Path) -> Path:
    """The local Data Docs site's index.html (GX's site URL; default
    ``<reports>/gx/uncommitted/data_docs/local_site``)."""
    for url in context.get_docs_sites_urls():
        if (url.get("site_url") or "").startswith("file://"):  # None before the site is first built
            return Path(url["site_url"][len("file://"):])
    return Path(reports_dir) / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"


def build_data_docs(reports_dir: Path, run_names: list[str] | None = None) -> Path:
    """Build the GX Data Docs site of ``<reports_dir>/gx`` once: the pages of the validation results whose
    run name is in ``run_names`` (the batch ids given to :func:`run_checkpoint`, e.g. every table of one
    logical date) and of their suites, then the index page (which lists every run with a page on the site,
    reading each one's stored result). ``run_names`` None: every stored result and suite (a full rebuild).
    Pages of earlier runs are left as they are.

    What GX's ``UpdateDataDocsAction`` does after each checkpoint, done once for many checkpoints: the index
    build reads the result of every page on the site, so once per table it grew with the site's history.

    Returns:
        the path of the site's index.html (when no stored result has one of ``run_names``, the site is left
        as it is, or fully built if it has no index yet).

    Raises:
        FileNotFoundError: ``<reports_dir>/gx`` holds no GX project (no checkpoint ran), or GX did not
            write the index.
    """
    _quiet_great_expectations()
    reports_dir = Path(reports_dir).resolve()
    # only whether it exists (a project file is replaced, never removed): no lock folder for a missing project
    if not (reports_dir / "gx" / "great_expectations.yml").is_file():
        raise FileNotFoundError(f"no Great Expectations project under {reports_dir / 'gx'}: run a checkpoint first")
    with gx_project_lock(reports_dir):
        return _build_data_docs(_gx_context(reports_dir), reports_dir, run_names)


def _build_data_docs(context, reports_dir: Path, run_names: list[str] | None) -> Path:
    """:func:`build_data_docs` with the project's open ``context``; call it under :func:`gx_project_lock`."""
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
    )

    resources = None
    if run_names is not None:
        wanted = set(run_names)
        keys = [k for k in context.validation_results_store.list_keys() if k.run_id.run_name in wanted]
        suites = sorted({k.expectation_suite_identifier.name for k in keys})
        resources = keys + [ExpectationSuiteIdentifier(name=n) for n in suites]
    index = _docs_index(context, reports_dir)
    if resources == [] and index.is_file():
        return index  # no result of these runs (every batch stopped before its checkpoint): the site is as it was
    # an empty list would make GX render every stored result: None says so explicitly
    context.build_data_docs(resource_identifiers=resources or None, build_index=True)
    if not index.is_file():
        raise FileNotFoundError(f"GX did not write {index}")
    _offline_site(index)
    return index


def _offline_site(index: Path) -> None:
    """Make the site of ``index`` self-contained (local copies of GX's CDN assets, links from failed rules to their
    quarantine extracts): :func:`govlake.quality.offline_docs.make_site_offline`."""
    from govlake.quality.offline_docs import make_site_offline

    make_site_offline(index.parent)
