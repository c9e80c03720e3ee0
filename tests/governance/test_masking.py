"""Tests of govlake.governance.masking: the issue #21 formats, Python = SQL = Column on the same inputs (real
Spark), free-text scrubbing, the log filter, and PII_COLUMNS covering every personal-looking column of the
source registry and the table contracts."""
from __future__ import annotations

import logging

import pytest

from govlake.governance.masking import (
    KINDS,
    NOT_PERSONAL,
    PERSONAL_LOOKING,
    PII_COLUMNS,
    ScrubFilter,
    mask_column,
    mask_for,
    mask_key,
    mask_sql,
    mask_value,
    scrub_sql,
    scrub_text,
)

#: (kind, value, expected mask): issue #21 formats plus the documented edge cases.
CASES = [
    ("id_no", "11010519491231002X", "110105********002X"),
    ("id_no", "11010519491231002x", "110105********002x"),  # lower-case check character is still an ID
    ("id_no", "110105491231123", "110105******123"),  # 15-digit legacy number (GB 11643-1989)
    ("id_no", "1.10105194912e+17", "*****************"),  # malformed: asterisks of its length
    ("id_no", "１１０１０５１９４９１２３１００２Ｘ", "*" * 18),  # full-width digits are malformed
    ("id_no", "11010519491231002X\n", "*" * 19),  # a trailing line break is malformed too ('$' would accept it)
    ("id_no", "", ""),
    ("id_no", None, None),
    ("name", "张三", "张*"),
    ("name", "欧阳娜娜", "欧***"),
    ("name", "买买提·艾力", "买*****"),
    ("name", "𠮷田", "𠮷*"),  # a supplementary character counts as one
    ("name", "张", "*"),
    ("name", None, None),
    ("phone", "13812341234", "138****1234"),
    ("phone", "0311-87654321", "*********4321"),  # landline: last 4 only
    ("phone", "138 1234 1234", "*********1234"),  # not an 11-digit mobile: last 4 only
    ("phone", "12345678901", "*******8901"),  # '12' is no mobile prefix
    ("phone", "1234", "****"),
    ("address", "长安区建北街道棉一东社区12号楼3单元502室", "长安区建北街道棉一东社区***"),
    ("address", "井陉县威州镇东营村123号", "井陉县威州镇东营村***"),
    ("address", "新华区革新街道和平路居民委员会", "新华区革新街道和平路居民委员会"),  # nothing below community
    ("address", "桥西区振头街道振头二村社区5号楼", "桥西区振头街道振头二村社区***"),  # last marker wins
    ("address", "裕华区东苑街道体育南大街88号", "裕华区东苑街道***"),  # no community: street level
    ("address", "中山东路88号", "***"),  # neither: fixed mask
    ("address", "长安区第3社区7号", "***"),  # a digit before the marker: no prefix is safe to keep
    ("address", None, None),
]


@pytest.mark.parametrize(("kind", "value", "expected"), CASES)
def test_mask_value_formats(kind, value, expected):
    assert mask_value(kind, value) == expected


def test_sql_and_column_forms_equal_mask_value_on_real_spark(spark):
    df = spark.createDataFrame([(i, v) for i, (_, v, _) in enumerate(CASES)], "i int, v string")
    df.createOrReplaceTempView("mask_cases")
    exprs = ", ".join(f"{mask_sql(kind, '`v`')} AS {kind}" for kind in KINDS)
    by_sql = {r["i"]: r for r in spark.sql(f"SELECT i, {exprs} FROM mask_cases").collect()}
    by_col = {r["i"]: r for r in df.select("i", *[mask_column(k, "v").alias(k) for k in KINDS]).collect()}
    # the Ranger valueExpr form: '{col}' substituted by the column
    ranger = mask_sql("id_no", "{col}").replace("{col}", "v")
    # a Ranger valueExpr template: no brace but {col}, no backslash
    assert [k for k in KINDS if "{" in mask_sql(k, "{col}").replace("{col}", "") or "\\" in mask_sql(k, "c")] == []
    by_ranger = {r[0]: r[1] for r in spark.sql(f"SELECT i, {ranger} FROM mask_cases").collect()}
    for i, (kind, value, expected) in enumerate(CASES):
        assert by_sql[i][kind] == by_col[i][kind] == expected, (kind, value)
        # every kind on every input, not only the input's own kind
        for other in KINDS:
            assert by_sql[i][other] == by_col[i][other] == mask_value(other, value), (other, value)
        assert by_ranger[i] == mask_value("id_no", value)


def test_mask_column_masks_any_expression(spark):
    from pyspark.sql import functions as F

    df = spark.createDataFrame([("13812341234 ",)], "v string")
    assert df.select(mask_column("phone", F.trim("v"))).collect()[0][0] == "138****1234"


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown mask kind 'email'"):
        mask_value("email", "a@b.cn")
    with pytest.raises(ValueError, match="unknown mask kind"):
        mask_sql("email", "v")


TEXT = ("row 11010519491231002X failed; key P1|11010519491231002x, mobile 13812341234, "
        "grid 130102001001001, order 1381234123456789012345, tel 0311-87654321")
SCRUBBED = ("row 110105********002X failed; key P1|110105********002x, mobile 138****1234, "
            "grid 130102001001001, order 1381234123456789012345, tel 0311-87654321")


def test_scrub_text_masks_ids_and_mobiles_only():
    assert scrub_text(TEXT) == SCRUBBED
    assert scrub_text(ValueError("bad 13812341234")) == "bad 138****1234"


def test_scrub_sql_equals_scrub_text(spark):
    df = spark.createDataFrame([(TEXT,), (None,)], "v string")
    df.createOrReplaceTempView("scrub_cases")
    assert [r[0] for r in spark.sql(f"SELECT {scrub_sql('v')} FROM scrub_cases").collect()] == [SCRUBBED, None]


def test_mask_for_masks_pii_columns_and_scrubs_the_rest():
    assert mask_for("wife_name", "李四娘") == "李**"
    assert mask_for("district_name", "长安区") == "长安区"
    assert mask_for("detail", "call 13812341234") == "call 138****1234"
    assert mask_for("name", None) is None


def test_scrub_filter_scrubs_messages_arguments_and_tracebacks():
    record = logging.LogRecord("t", logging.ERROR, __file__, 1, "id %s phone %s", ("11010519491231002X",
                               "13812341234"), None)
    try:
        raise ValueError("bad id 11010519491231002X")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    assert ScrubFilter().filter(record) is True
    assert record.getMessage() == "id 110105********002X phone 138****1234"
    assert "110105********002X" in record.exc_text and "11010519491231002X" not in record.exc_text


def _schema_columns():
    """Every column name of the source registry (delivered columns, file headers and their raw names, document
    projections, subscriptions) and of every table contract."""
    from govlake.core import catalog
    from govlake.extract.registry import load_registry

    names = set()
    for spec in load_registry().values():
        for obj in spec.objects.values():
            names.update(obj.columns, obj.header_map, obj.header_map.values(), obj.projection)
        for sub in spec.subscriptions:
            names.update(sub.columns)
    for table in catalog.load_catalog().values():
        names.update(table.column_names)
    return names


def test_every_personal_looking_column_is_classified():
    names = _schema_columns()
    assert {"id_no", "wife_id_no", "applicant_phone", "district_name", "full_address"} <= names
    unclassified = sorted(n for n in names if PERSONAL_LOOKING.search(n.lower())
                          and n not in PII_COLUMNS and n not in NOT_PERSONAL)
    assert unclassified == []
    assert set(PII_COLUMNS.values()) == set(KINDS)
    assert not set(PII_COLUMNS) & set(NOT_PERSONAL)
    # no stale entries: every classified column exists in some schema
    assert sorted((set(PII_COLUMNS) | set(NOT_PERSONAL)) - names) == []


def test_the_personal_pattern_catches_new_columns():
    assert [n for n in ("spouse_id_no", "contact_mobile", "home_addr", "emergency_tel", "申请人姓名", "sex_code")
            if PERSONAL_LOOKING.search(n)] == ["spouse_id_no", "contact_mobile", "home_addr", "emergency_tel",
                                                "申请人姓名"]


def test_mask_key_masks_each_key_part_by_its_column():
    assert mask_key(("person_no", "id_no"), "P1|11010519491231002X") == "P1|110105********002X"
    assert mask_key(("case_no",), "C1 13812341234") == "C1 138****1234"
    # parts that do not line up with the key columns: the whole key masked as the personal column's kind
    assert mask_key(("id_no", "name"), "11010519491231002X|张|三") == "*" * 22
    assert mask_key(("person_no",), None) is None


def test_pipeline_log_records_are_scrubbed_at_creation(caplog):
    from govlake.core import runlog

    runlog.install()
    log = logging.getLogger("govlake.test_masking")
    with caplog.at_level(logging.INFO, logger="govlake"):
        log.info("row %s phone %s", "11010519491231002X", "13812341234")
        try:
            raise KeyError("11010519491231002X")
        except KeyError:
            log.exception("lookup failed")
    assert [r.getMessage() for r in caplog.records] == ["row 110105********002X phone 138****1234", "lookup failed"]
    text = caplog.text
    assert "110105********002X" in text and "11010519491231002X" not in text and "13812341234" not in text


def test_extract_errors_and_ledger_reasons_are_scrubbed():
    from govlake.extract.raw import ReconciliationError, error_text
    from govlake.extract.registry import SourceUnavailable

    err = SourceUnavailable("source hukou.persons: invalid input \"11010519491231002X\" for phone 13812341234")
    assert str(err) == "source hukou.persons: invalid input \"110105********002X\" for phone 138****1234"
    assert str(ReconciliationError("batch b: key 11010519491231002X")) == "batch b: key 110105********002X"
    assert error_text(ValueError("bad 13812341234\nsecond line")) == "ValueError: bad 138****1234"


def test_quarantine_extract_pages_show_masked_keys_and_messages(tmp_path):
    import datetime as dt

    from govlake.quality import quarantine_pages
    from govlake.quality.rules import Suite

    suite = Suite("raw.t0", "raw.t0", ("person_no", "id_no"), (), "")
    extracts = {"t0.id_no.gb11643": {"total": 1, "rows": [
        ("P1|11010519491231002X", 3, "raw.t0.id_no: t0.id_no.gb11643 failed for key P1|11010519491231002X")]}}
    [page] = quarantine_pages.write_extracts(tmp_path, "t0", dt.date(2025, 6, 30), suite, extracts)
    text = page.read_text(encoding="utf-8")
    assert text.count("110105********002X") == 2 and "11010519491231002X" not in text
