"""Tests of the China code pack (govlake/codes/code_lists.py): GB 11643-1999 citizen IDs, strict dates, GB/T 2261.1 sex,
GB/T 3304 ethnicity, code lists. Python and Spark versions are checked against the same inline rows."""
from __future__ import annotations

from datetime import date

import pytest

from govlake.codes import code_lists as codes
from govlake.codes.code_lists import (
    DATE_FORMATS,
    SEX_MAPPINGS,
    IdResult,
    convert_15_to_18,
    id_birth_date,
    id_birth_date_col,
    id_check_char,
    id_error_col,
    id_errors,
    id_is_valid_col,
    id_normalize_col,
    id_sex_code,
    id_sex_code_col,
    is_known_division_code,
    load_code_list,
    normalize_id,
    parse_date,
    parse_date_col,
    standardize_ethnic,
    standardize_ethnic_col,
    standardize_sex,
    standardize_sex_col,
)

VALID = "11010519491231002X"  # the GB 11643-1999 example: 北京市朝阳区, 1949-12-31, female
FULLWIDTH = "１１０１０５１９４９１２３１００２Ｘ"

# 15-digit legacy ID 130102 900101 001 → body 13010219900101001. Check character by hand (GB 11643-1999 §8.2):
# digits  1 3  0 1 0 2 1 9 9 0 0 1  0 1 0 0 1
# weights 7 9 10 5 8 4 2 1 6 3 7 9 10 5 8 4 2
# sum = 7+27+0+5+0+8+2+9+54+0+0+9+0+5+0+0+2 = 128; 128 mod 11 = 7; "10X98765432"[7] = '5'
ID15 = "130102900101001"
ID15_AS_18 = "130102199001010015"


def with_check(body17: str) -> str:
    return body17 + id_check_char(body17)


# raw value → (normalized, flags)
NORMALIZE_CASES = [
    (VALID, VALID, ()),
    ("11010519491231002x", VALID, ("lowercase_x",)),
    (FULLWIDTH, VALID, ("fullwidth",)),
    ("１１０１０５１９４９１２３１００２ｘ", VALID, ("fullwidth", "lowercase_x")),
    (" 11010519491231002X\t", VALID, ("whitespace",)),
    ("1.10105194912310E+17", None, ("float_mangled",)),
    ("1.10105E+17", None, ("float_mangled",)),
    ("1.30102199001011E17", None, ("float_mangled",)),
    (ID15, ID15_AS_18, ("converted_15_to_18",)),
    ("11010519491231007X", "11010519491231007X", ()),
    ("", None, ("missing",)),
    ("   ", None, ("missing", "whitespace")),
    ("\u300011010519491231002X\u00a0", VALID, ("fullwidth", "whitespace")),  # ideographic / no-break spaces
    ("110105194912310.0", None, ("float_mangled",)),
    ("1.10105e17", None, ("float_mangled",)),
    ("11010519491231.2E", "11010519491231.2E", ()),  # not a number: left for the format check
    (None, None, ("missing",)),
]

# normalised ID → errors (exact, in order)
ERROR_CASES = [
    (VALID, []),
    (ID15_AS_18, []),
    ("11010519491231007X", ["checksum"]),
    (with_check("11010519490230002"), ["birth_date"]),  # 1949-02-30 does not exist
    (with_check("99010519491231002"), ["division_code"]),  # no province 99
    (with_check("11022819800101001"), []),  # 110228 密云县, abolished 2015: historical prefix 1102
    (with_check("13010020000229001"), []),  # 130100 city-level code, 2000 is a leap year
    (with_check("11010520300101001"), ["birth_date"]),  # after ID_MAX_BIRTH_DATE
    (with_check("11010518991231001"), ["birth_date"]),  # before 1900-01-01
    (with_check("11010519000229001"), ["birth_date"]),  # 1900 is not a leap year (divisible by 100)
    (with_check("11010519800229001"), []),  # 1980 is
    (with_check("11010519800431001"), ["birth_date"]),  # April has 30 days
    (with_check("11010519801301001"), ["birth_date"]),  # month 13
    (with_check("11010519800100001"), ["birth_date"]),  # day 00
    (with_check("11010520261231001"), []),  # ID_MAX_BIRTH_DATE itself
    ("11010519491231002\U00020000", ["format"]),  # 18 code points (one outside the BMP), not 18 digits
    ("11010519491231002\uff38", ["format"]),  # full-width X: not normalised here
    ("99010519490230002X", ["checksum", "birth_date", "division_code"]),
    (with_check("99999999999999999"), ["birth_date", "division_code"]),  # extreme digits: checksum still right
    (with_check("00000000000000000"), ["birth_date", "division_code"]),
    (with_check("12345619990101987"), ["division_code"]),
    ("123456199901019870", ["checksum", "division_code"]),
    ("1101051949123100", ["length"]),
    ("11010519491231002x", ["format"]),
    ("1101051949123100AX", ["format"]),
    ("", ["missing"]),
    (None, ["missing"]),
]


# ------------------------------------------------------------------------------------------------------ Python


@pytest.mark.parametrize("raw,normalized,flags", NORMALIZE_CASES)
def test_normalize_id(raw, normalized, flags):
    assert normalize_id(raw) == IdResult(normalized, flags)


@pytest.mark.parametrize("id18,errors", ERROR_CASES)
def test_id_errors(id18, errors):
    assert id_errors(id18) == errors


def test_lowercase_x_and_fullwidth_are_valid_after_normalising():
    assert id_errors("11010519491231002x") == ["format"]
    assert id_errors(normalize_id("11010519491231002x").normalized) == []
    assert id_errors(normalize_id(FULLWIDTH).normalized) == []


def test_convert_15_to_18():
    assert convert_15_to_18(ID15) == ID15_AS_18
    with pytest.raises(ValueError):
        convert_15_to_18("13010290010100")


def test_max_birth_date_is_an_argument():
    late = with_check("11010520300101001")
    assert id_errors(late, max_birth_date=date(2030, 12, 31)) == []
    assert id_birth_date(late) is None
    assert id_birth_date(late, max_birth_date=date(2030, 12, 31)) == date(2030, 1, 1)


def test_birth_date_and_sex():
    assert id_birth_date(VALID) == date(1949, 12, 31)
    assert id_birth_date(with_check("11010519490230002")) is None
    assert id_birth_date("11010519491231002x") is None
    assert id_sex_code(VALID) == "2"  # 17th digit 2: even → 女
    assert id_sex_code(ID15_AS_18) == "1"  # 17th digit 1: odd → 男
    assert id_sex_code(None) is None


def test_division_codes():
    assert is_known_division_code("130102")  # in areas.csv
    assert is_known_division_code("130000")  # province level
    assert is_known_division_code("130199")  # unknown county, known city 1301 (abolished codes)
    assert not is_known_division_code("139901")  # no city 1399
    assert not is_known_division_code("990000")  # no province 99
    assert not is_known_division_code("810000")  # Hong Kong: not in provinces.csv


@pytest.mark.parametrize("text,expected", [
    ("2023年2月30日", None),
    ("20240229", date(2024, 2, 29)),
    ("20230229", None),
    ("2024-02-29", date(2024, 2, 29)),
    ("2024-2-9", date(2024, 2, 9)),
    ("2024/02/09", date(2024, 2, 9)),
    ("2024年12月1日", date(2024, 12, 1)),
    ("2024.2.9", date(2024, 2, 9)),
    (" 2024-02-29 ", date(2024, 2, 29)),
    ("2024-13-01", None),
    ("2024-02-29 10:00:00", None),
    ("0000-01-01", None),
    (None, None),
])
def test_parse_date(text, expected):
    assert parse_date(text) == expected


def test_parse_date_custom_formats():
    assert parse_date("29/02/2024", ["dd/MM/yyyy"]) == date(2024, 2, 29)
    assert parse_date("2024-02-29", ["dd/MM/yyyy"]) is None
    with pytest.raises(ValueError):
        parse_date("2024-02-29 10:00", ["yyyy-MM-dd HH:mm"])


SEX_CASES = [  # (mapping name, value, expected GB/T 2261.1 code)
    ("digit", "1", "1"), ("digit", "2", "2"), ("digit", " 9 ", "9"), ("digit", "3", None),
    ("chinese", "男", "1"), ("chinese", " 女 ", "2"), ("chinese", "M", None),
    ("letter", "m", "1"), ("letter", "F", "2"), ("letter", "Ｆ", "2"), ("letter", None, None),
]

ETHNIC_CASES = [
    ("01", "01"), ("1", "01"), ("汉", "01"), ("汉族", "01"), ("Han", "01"), ("HA", "01"), ("ha ", "01"),
    ("蒙古", "02"), ("11", "11"), ("56", "56"), ("57", None), ("0", None), ("火星族", None), (None, None),
]


@pytest.mark.parametrize("mapping,value,expected", SEX_CASES)
def test_standardize_sex(mapping, value, expected):
    assert standardize_sex(value, SEX_MAPPINGS[mapping]) == expected


def test_standardize_sex_rejects_non_gbt_codes():
    with pytest.raises(ValueError):
        standardize_sex("1", {"M": "male"})


@pytest.mark.parametrize("value,expected", ETHNIC_CASES)
def test_standardize_ethnic(value, expected):
    assert standardize_ethnic(value) == expected


def test_load_code_list():
    assert load_code_list("sex") == {"0": "未知性别", "1": "男", "2": "女", "9": "未说明"}
    ethnic = load_code_list("ethnicity")
    assert (len(ethnic), ethnic["01"], ethnic["56"]) == (56, "汉族", "基诺族")
    assert load_code_list("relation")["02"] == "户主"
    assert load_code_list("political")["13"] == "群众"
    assert load_code_list("marital_status")["20"] == "已婚"
    assert load_code_list("education")["21"] == "大学本科毕业"
    assert load_code_list("employment_status")["27"] == "农民"
    assert codes.ethnic_name_to_code()["蒙古族"] == "02"
    with pytest.raises(ValueError):
        load_code_list("blood_type")


# ------------------------------------------------------------------------------------------------------ Spark


def test_spark_id_columns_agree_with_python(spark):
    raws = [r for r, _, _ in NORMALIZE_CASES] + [r for r, _ in ERROR_CASES]
    df = spark.createDataFrame([(i, r) for i, r in enumerate(raws)], "i int, raw string")
    norm = df.withColumn("id", id_normalize_col(df.raw))
    rows = norm.select(
        "i", "raw", "id",
        id_error_col(norm.id).alias("error"),
        id_is_valid_col(norm.id).alias("valid"),
        id_birth_date_col(norm.id).alias("birth"),
        id_sex_code_col(norm.id).alias("sex"),
        id_error_col(norm.raw).alias("raw_error"),
    ).collect()
    rows = sorted(rows, key=lambda r: r.i)
    assert len(rows) == len(raws)
    for row in rows:
        py = normalize_id(row.raw).normalized
        errors = id_errors(py)
        raw_errors = id_errors(row.raw)
        assert (row.id, row.error, row.valid, row.birth, row.sex, row.raw_error) == (
            py, errors[0] if errors else None, not errors, id_birth_date(py), id_sex_code(py),
            raw_errors[0] if raw_errors else None), row.raw
    by_raw = {row.raw: row for row in rows}
    # the brief's cases, spelled out for the Spark side
    assert (by_raw[VALID].valid, by_raw[VALID].sex, by_raw[VALID].birth) == (True, "2", date(1949, 12, 31))
    assert (by_raw["11010519491231002x"].id, by_raw["11010519491231002x"].valid) == (VALID, True)
    assert by_raw["11010519491231002x"].raw_error == "format"
    assert by_raw["11010519491231007X"].error == "checksum"
    assert (by_raw[FULLWIDTH].id, by_raw[FULLWIDTH].valid) == (VALID, True)
    assert (by_raw["1.10105194912310E+17"].id, by_raw["1.10105194912310E+17"].valid) == (None, False)
    assert (by_raw[ID15].id, by_raw[ID15].sex) == (ID15_AS_18, "1")
    assert by_raw[with_check("11010519490230002")].error == "birth_date"
    assert by_raw[with_check("99010519491231002")].error == "division_code"
    assert by_raw["99010519490230002X"].error == "checksum"
    assert (by_raw[None].error, by_raw[None].valid) == ("missing", False)


def test_spark_id_fold_is_the_fold_table(spark):
    """The Java normaliser (govlake/codes/udf/Gb11643.java) folds exactly the characters of ``_fold_table`` (and the
    characters next to its ranges not at all)."""
    src, dst = codes._fold_table()
    neighbours = "\uff00\uff5f\u2ff0\u3001\u009f\u00a1\u1fff\u200b\u202e\u2030\u205e\u2060"
    chars = src + neighbours
    df = spark.createDataFrame([(ch, f"A{ch}B") for ch in chars], "ch string, raw string")
    got = dict(df.select("ch", id_normalize_col(df.raw).alias("id")).collect())
    table = str.maketrans(src, dst)
    assert got == {ch: f"A{ch}B".translate(table).replace("x", "X") for ch in chars}
    assert (got["\uff10"], got["\u3000"], got["\uff00"], got["\uff58"]) == ("A0B", "A B", "A\uff00B", "AXB")


def test_spark_dates_and_codes_agree_with_python(spark):
    dates = ["2023年2月30日", "20240229", "20230229", "2024-2-9", "2024/02/09", "2024.2.9", "2024年12月1日",
             " 2024-02-29 ", "2024-13-01", "0000-01-01", "abc", None]
    n = max(len(dates), len(SEX_CASES) + 2, len(ETHNIC_CASES))
    pad = lambda xs: list(xs) + [None] * (n - len(xs))  # noqa: E731
    sex_values = pad([v for _, v, _ in SEX_CASES] + ["IT'S ", "a\\b"])
    df = spark.createDataFrame(
        list(zip(range(n), pad(dates), sex_values, pad([v for v, _ in ETHNIC_CASES]), strict=False)),
        "i int, d string, sex string, ethnic string")
    rows = df.select(
        "i",
        parse_date_col(df.d).alias("date"),
        parse_date_col(df.d, ["dd/MM/yyyy"]).alias("date_dmy"),
        *[standardize_sex_col(df.sex, SEX_MAPPINGS[name]).alias(f"sex_{name}") for name in SEX_MAPPINGS],
        standardize_ethnic_col(df.ethnic).alias("ethnic_code"),
        standardize_sex_col(df.sex, QUOTED_MAPPING).alias("sex_quoted"),
    ).collect()
    rows = sorted(rows, key=lambda r: r.i)
    assert [r.date for r in rows] == [parse_date(d) for d in pad(dates)]
    assert [r.date for r in rows][:4] == [None, date(2024, 2, 29), None, date(2024, 2, 9)]
    assert all(r.date_dmy is None for r in rows)
    for i, (name, value, expected) in enumerate(SEX_CASES):
        assert rows[i][f"sex_{name}"] == expected, (name, value)
        for other in SEX_MAPPINGS:
            assert rows[i][f"sex_{other}"] == standardize_sex(value, SEX_MAPPINGS[other]), (other, value)
    assert [r.ethnic_code for r in rows][:len(ETHNIC_CASES)] == [e for _, e in ETHNIC_CASES]
    assert [r.sex_quoted for r in rows] == [standardize_sex(v, QUOTED_MAPPING) for v in sex_values]
    assert [r.sex_quoted for r in rows][:3] == ["1", "2", None]  # '1' → 男, '2' → 女, ' 9 ' unmapped
    quoted = [r.sex_quoted for r in rows][len(SEX_CASES):len(SEX_CASES) + 2]
    assert quoted == ["9", "0"]  # "it's" and "a\\b" survive the SQL map literal


# keys with SQL metacharacters must survive the map literal of standardize_sex_col
QUOTED_MAPPING = {"1": "1", "2": "2", "it's": "9", "a\\b": "0"}


def test_date_formats_default():
    assert {"yyyyMMdd", "yyyy-MM-dd", "yyyy/M/d", "yyyy年M月d日", "yyyy.M.d"} <= set(DATE_FORMATS)


# ------------------------------------------------------------------------------------- issue #5 code pack

ISSUE_ID_CASES = [  # raw value → (normalized, flags, valid after normalising)
    ("11010519491231002X", "11010519491231002X", (), True),
    ("11010519491231002x", "11010519491231002X", ("lowercase_x",), True),
    ("11010519491231007X", "11010519491231007X", (), False),
    ("１１０１０５１９４９１２３１００２Ｘ", "11010519491231002X", ("fullwidth",), True),
    ("1.10105E+17", None, ("float_mangled",), False),
]


@pytest.mark.parametrize("raw,normalized,flags,valid", ISSUE_ID_CASES)
def test_issue_id_cases(raw, normalized, flags, valid):
    result = normalize_id(raw)
    assert (result.normalized, result.flags, id_errors(result.normalized) == []) == (normalized, flags, valid)
    assert codes.canonical_value(raw, "gb11643_id") == normalized
    assert parse_date("2023年2月30日") is None


def test_division_status_and_codes():
    assert [codes.division_status(c) for c in ("130102", "130100", "130000", "110228", "139901", "13010", None)] == [
        "current", "current", "current", "historical", None, None, None]
    assert codes.division_code_ok("130102101002")  # listed community of 长安区
    assert not codes.division_code_ok("130102999999")  # Shijiazhuang: 12-digit code must be listed
    assert codes.division_code_ok("110105001001")  # Beijing: no village list in the repo, county part current
    assert codes.division_code_ok("１３０１０２")  # full-width digits folded (NFKC)
    assert codes.division_code_ok("110228") and not codes.division_code_ok("110228", historical=False)
    assert not codes.division_code_ok("1301021") and not codes.division_code_ok(None)
    # GB 11643 division part uses the same definition
    assert id_errors(with_check("11022819800101001")) == [] and codes.division_status("110228") == "historical"


def test_code_lists_phone_postcode_uscc():
    assert (codes.code_in_list("2", "sex"), codes.code_in_list("3", "sex"), codes.code_in_list(None, "sex")) == (
        True, False, None)
    assert codes.code_in_list("40", "marital_status") and not codes.code_in_list("4", "marital_status")
    assert codes.code_in_list("01", "ethnicity") and not codes.code_in_list("1", "ethnicity")
    assert codes.code_in_list("21", "education") and codes.code_in_list("02", "relation")
    assert not codes.code_in_list("98", "relation") and not codes.code_in_list("2", "relation")
    assert codes.normalize_phone("+86 138-1234-5678") == "13812345678"
    assert [codes.is_mobile_phone(v) for v in ("13812345678", "１３８ １２３４ ５６７８", "0311-1234567", "12812345678",
                                               "1381234567", None)] == [True, True, False, False, False, False]
    assert [codes.is_postcode(v) for v in ("050000", "010010", "10010", "10010.0", "05000A", None)] == [
        True, True, False, False, False, False]
    # GB 32100-2015 example code 91350100M000100Y43: check character 3 by hand-checked generator twin
    assert codes.uscc_check_char("91350100M000100Y4") == "3"
    assert [codes.is_valid_uscc(v) for v in ("91350100M000100Y43", "91350100m000100y43", "91350100M000100Y44",
                                             "91350100M000100I43", "9135010M000100Y43", None)] == [
        True, True, False, False, False, False]
    assert codes.canonical_value(ID15, "gb11643_id") == ID15_AS_18
    assert codes.canonical_value(" 138 1234 5678", "phone") == "13812345678"
    assert codes.canonical_value("ａｂ１", "code") == "AB1"
    with pytest.raises(ValueError):
        codes.canonical_value("1", "colour")


def test_spark_code_pack_agrees_with_python(spark):
    values = ["130102101002", "130102999999", "110105001001", "１３０１０２", "110228", "1301021", "91350100M000100Y43",
              "91350100M000100Y44", "91350100m000100y43", "13812345678", "１３８ １２３４ ５６７８", "+8613812345678",
              "0311-1234567", "050000", "10010", "2", "01", "1", "11010519491231002x", ID15, None]
    df = spark.createDataFrame(list(enumerate(values)), "i int, v string")
    rows = sorted(df.select(
        "i", "v",
        codes.division_code_ok_col(df.v).alias("div"),
        codes.division_code_ok_col(df.v, historical=False).alias("div_now"),
        codes.uscc_valid_col(df.v).alias("uscc"),
        codes.mobile_phone_ok_col(df.v).alias("mobile"),
        codes.postcode_ok_col(df.v).alias("post"),
        codes.code_in_list_col(df.v, "ethnicity").alias("eth"),
        codes.canonical_col(df.v, "gb11643_id").alias("c_id"),
        codes.canonical_col(df.v, "phone").alias("c_phone"),
    ).collect(), key=lambda r: r.i)
    for r in rows:
        assert (r.div, r.div_now, r.uscc, r.mobile, r.post, r.eth, r.c_id, r.c_phone) == (
            codes.division_code_ok(r.v), codes.division_code_ok(r.v, historical=False), codes.is_valid_uscc(r.v),
            codes.is_mobile_phone(r.v), codes.is_postcode(r.v), codes.code_in_list(r.v, "ethnicity"),
            codes.canonical_value(r.v, "gb11643_id"), codes.canonical_value(r.v, "phone")), r.v
    by_v = {r.v: r for r in rows}
    assert (by_v["110228"].div, by_v["110228"].div_now) == (True, False)
    assert (by_v["91350100M000100Y43"].uscc, by_v["91350100M000100Y44"].uscc) == (True, False)
    assert by_v["１３８ １２３４ ５６７８"].mobile and by_v["11010519491231002x"].c_id == VALID


def test_dates_ordered_and_unknown_fields(spark):
    fmts = ["yyyy-MM-dd", "yyyy年M月d日"]
    pairs = [  # earlier, later, strict, or_equal
        ("1950-03-01", "2025-06-01", True, True),
        ("2025-06-01", "2025-05-31", False, False),        # inverted
        ("2025-06-01", "2025-06-01", False, True),         # the same day
        ("2025年3月1日", "2025-03-02", True, True),         # mixed formats compare as dates
        ("2025-03-02", "2025年3月1日", False, False),
        ("2023年2月30日", "2025-03-02", None, None),        # not a real date: not judged
        (None, "2025-03-02", None, None),
        ("2025/3/1", "2025-03-02", None, None),             # not one of the formats
    ]
    for a, b, strict, equal in pairs:
        assert (codes.dates_ordered(a, b, fmts), codes.dates_ordered(a, b, fmts, or_equal=True)) == (strict, equal)
    docs = ['{"_id": 1, "a": {"x": 1}}', '{"a": 1, "tmp_sync_flag": "1", "z": null, "b": 2}', "[1, 2]", "not json",
            None]
    assert [codes.unknown_fields(d, ["_id", "a"]) for d in docs] == [[], ["b", "tmp_sync_flag", "z"], None, None, None]
    df = spark.createDataFrame([(i, a, b, docs[i] if i < len(docs) else None) for i, (a, b, _, _) in enumerate(pairs)],
                               "i int, a string, b string, d string")
    got = sorted(df.select("i", codes.dates_ordered_col(df.a, df.b, fmts).alias("s"),
                           codes.dates_ordered_col(df.a, df.b, fmts, or_equal=True).alias("e"),
                           codes.unknown_fields_col(df.d, ["_id", "a"]).alias("u")).collect(), key=lambda r: r.i)
    assert [(r.s, r.e) for r in got] == [(s, e) for _, _, s, e in pairs]
    assert [r.u for r in got] == [[], ["b", "tmp_sync_flag", "z"], None, None, None, None, None, None]
