"""Fault kinds of the health, hrss, address and one-window-application sources and of the GBK file drop.

Same rules as :mod:`sample.faults` (the :class:`~sample.faults.Planner` picks the rows: round(rate ×
rows) per kind, at least one when the table is big enough, never more than half of the eligible rows, distinct
rows first). Every fault is one :class:`~sample.faults.Fault` (a row of ``truth/faults.csv``); ``row_key`` is
the record's true business key even when the fault nulls it.
"""
from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import Any

from sample.faults import FULLWIDTH, WHOLE_ROW, Fault, Planner, text
from sample.more_departments import CREDIT_CHARS

#: CJK Extension A rare characters (生僻字) used in names, e.g. 㛃 (U+36C3), 䶮 (U+4DAE).
RARE_CHARS = "㛃䶮䲜㙦䴔㵘䒕㻞䏝㸚"
BIRTH_FAULTS = ("business_key_null", "number_out_of_range", "name_rare_char", "birth_date_impossible")
DEATH_FAULTS = ("death_before_birth", "date_chinese_format", "id_embedded_space")
EMPLOYMENT_FAULTS = ("sex_code_mixed", "phone_formatting", "date_chinese_format", "date_order_inverted",
                     "credit_code_bad_check")
INSURANCE_FAULTS = ("number_out_of_range", "duplicate_across_batches")
ADDRESS_FAULTS = ("division_code_lost_zeros", "coord_swapped", "number_out_of_range")
APPLICATION_FAULTS = ("doc_unknown_field", "doc_field_renamed", "date_chinese_format", "phone_formatting",
                      "id_embedded_space", "business_key_null", "name_rare_char")
DROP_FAULTS = ("file_gbk_encoded",)

Change = Callable[[dict[str, Any], int], tuple[Any, Any]]
#: Delivered columns that identify a row whose business key the fault nulled (``Fault.row_locator``), per table:
#: the document ``_id``, or the child's name, birth date and time and both parents' IDs of a birth record.
LOCATOR_COLUMNS = {("health", "births"): ("child_name", "birth_date", "birth_time", "mother_id_no", "father_id_no"),
                   ("zhengwu", "applications"): ("_id",)}


def zh_datetime(value: datetime) -> str:
    """Chinese date-time text without zero padding in the date, e.g. '2025年6月3日 10:22:05'."""
    return f"{value.year}年{value.month}月{value.day}日 {value:%H:%M:%S}"


def zh_iso_date(value: str) -> str:
    """'2025-03-01' → '2025年3月1日'."""
    y, m, d = (int(x) for x in value.split("-"))
    return f"{y}年{m}月{d}日"


def spaced_id(id_no: str) -> str:
    """An ID with embedded spaces after the division code and the birth date ('130102 19900101 1234')."""
    cut = 12 if len(id_no) == 15 else 14
    return f"{id_no[:6]} {id_no[6:cut]} {id_no[cut:]}"


def messy_phone(phone: str, k: int) -> str:
    """Phone number variants, cycling on ``k``: '138 1234 5678', full-width digits, padded with spaces."""
    return (f"{phone[:3]} {phone[3:7]} {phone[7:]}", phone.translate(FULLWIDTH), f" {phone} ")[k % 3]


def lost_zeros(code12: str) -> str:
    """A 12-digit division code whose 3-digit street and community parts lost their leading zeros
    (each part cast to an integer before concatenation): '130102001001' → '13010211'."""
    return code12[:6] + str(int(code12[6:9])) + str(int(code12[9:12]))


def rare_name(name: str, k: int) -> str:
    """The name with its last character replaced by a rare character (cycling through :data:`RARE_CHARS`)."""
    return name[:-1] + RARE_CHARS[k % len(RARE_CHARS)]


def _set(column: str, fn: Callable[[Any, int], Any]) -> Change:
    """A change of ``row[column]`` (a dotted path into nested dicts) by ``fn(old, k)``; returns (old, new)."""
    parts = column.split(".")

    def change(row: dict[str, Any], k: int) -> tuple[Any, Any]:
        target = row
        for p in parts[:-1]:
            target = target[p]
        old = target[parts[-1]]
        target[parts[-1]] = fn(old, k)
        return old, target[parts[-1]]
    return change


def _get(row: dict[str, Any], column: str) -> Any:
    for p in column.split("."):
        row = row[p] if isinstance(row, dict) else None
    return row


def locator_text(value: Any) -> str | None:
    """A delivered value as the raw layer keeps it as text: None for NULL, ``ObjectId(<hex>)`` for an ObjectId
    (as :func:`govlake.extract.registry.document_id_text`), else ``str``."""
    if value is None:
        return None
    if type(value).__name__ == "ObjectId":
        return f"ObjectId({value})"
    return str(value)


def inject(rows: list[dict[str, Any]], planner: Planner, source: str, table: str, key: str,
           plans: list[tuple[str, str, Callable[[dict[str, Any]], bool], Change]],
           taken: dict[int, set[str]] | None = None) -> list[Fault]:
    """Apply ``plans`` — (fault_kind, column, eligible(row), change(row, k) → (old, new)) — to ``rows`` in place,
    in the given order; record each as a Fault keyed by ``row[key]`` as it was before the change. A fault that
    leaves ``row[key]`` NULL gets a ``row_locator`` of the table's :data:`LOCATOR_COLUMNS`, taken after every plan
    (the values delivered)."""
    taken = {} if taken is None else taken
    faults = []
    keyless: list[tuple[int, int]] = []  # (fault index, row index)
    n = len(rows)
    for kind, column, eligible, change in plans:
        def row_eligible(i: int, eligible: Callable[[dict[str, Any]], bool] = eligible) -> bool:
            return eligible(rows[i])

        picked = planner.choose(planner.count(kind, n), n, row_eligible, taken, column)
        for k, i in enumerate(picked):
            row_key = _get(rows[i], key)
            old, new = change(rows[i], k)
            faults.append(Fault(source, table, row_key, column, kind, text(old), text(new)))
            if _get(rows[i], key) is None:
                keyless.append((len(faults) - 1, i))
    if keyless:
        columns = LOCATOR_COLUMNS.get((source, table))
        if columns is None:
            raise ValueError(f"{source}.{table}: a fault nulls the business key {key} but the table has no "
                             "LOCATOR_COLUMNS to identify the row")
        for j, i in keyless:
            locator = {c: locator_text(_get(rows[i], c)) for c in columns}
            faults[j] = replace(faults[j], row_locator=json.dumps(locator, ensure_ascii=False, sort_keys=True))
    return faults


def impossible_iso(value: str) -> str:
    """'YYYY-MM-DD' → the same month's impossible day: 31 of a 30-day month, else 'YYYY-02-30'."""
    y, m = int(value[:4]), int(value[5:7])
    return f"{y:04d}-{m:02d}-31" if m in (4, 6, 9, 11) else f"{y:04d}-02-30"


def inject_birth_faults(rows: list[dict[str, Any]], planner: Planner) -> list[Fault]:
    """health.births: number_out_of_range (birth_weight_g × 10, or 0, alternating), name_rare_char
    (child_name), birth_date_impossible (birth_date 'YYYY-02-30' / 'YYYY-MM-31'), business_key_null (cert_no)."""
    return inject(rows, planner, "health", "births", "cert_no", [
        ("number_out_of_range", "birth_weight_g", lambda r: True,
         _set("birth_weight_g", lambda v, k: v * 10 if k % 2 == 0 else 0)),
        ("name_rare_char", "child_name", lambda r: True, _set("child_name", rare_name)),
        ("birth_date_impossible", "birth_date", lambda r: True, _set("birth_date", lambda v, k: impossible_iso(v))),
        ("business_key_null", "cert_no", lambda r: True, _set("cert_no", lambda v, k: None)),
    ])


def inject_death_faults(rows: list[dict[str, Any]], planner: Planner, rng: random.Random) -> list[Fault]:
    """health.deaths: death_before_birth (death_date 1–3,650 days before birth_date), date_chinese_format
    (death_date '2025年3月1日'), id_embedded_space (id_no '130102 19450101 123X')."""
    def before_birth(row: dict[str, Any], k: int) -> tuple[Any, Any]:
        old = row["death_date"]
        row["death_date"] = (date.fromisoformat(row["birth_date"]) - timedelta(days=rng.randint(1, 3650))).isoformat()
        return old, row["death_date"]
    return inject(rows, planner, "health", "deaths", "death_no", [
        ("death_before_birth", "death_date", lambda r: True, before_birth),
        ("date_chinese_format", "death_date", lambda r: True, _set("death_date", lambda v, k: zh_iso_date(v))),
        ("id_embedded_space", "id_no", lambda r: True, _set("id_no", lambda v, k: spaced_id(v))),
    ])


def inject_employment_faults(rows: list[dict[str, Any]], planner: Planner, rng: random.Random) -> list[Fault]:
    """hrss.employment: sex_code_mixed (sex 'M'/'F' written '男'/'女' or '1'/'2', alternating), phone_formatting,
    date_chinese_format (start_date), date_order_inverted (end_date 1–400 days before start_date),
    credit_code_bad_check (employer_credit_code's GB 32100 check character replaced by the next one)."""
    def inverted(row: dict[str, Any], k: int) -> tuple[Any, Any]:
        old = row["end_date"]
        row["end_date"] = (date.fromisoformat(row["start_date"]) - timedelta(days=rng.randint(1, 400))).isoformat()
        return old, row["end_date"]

    def mixed(v: str, k: int) -> str:
        return ({"M": "男", "F": "女"} if k % 2 == 0 else {"M": "1", "F": "2"})[v]

    def bad_credit(v: str, k: int) -> str:
        return v[:17] + CREDIT_CHARS[(CREDIT_CHARS.index(v[17]) + 1) % len(CREDIT_CHARS)]
    return inject(rows, planner, "hrss", "employment", "emp_no", [
        ("date_order_inverted", "end_date", lambda r: True, inverted),
        ("sex_code_mixed", "sex", lambda r: True, _set("sex", mixed)),
        ("phone_formatting", "phone", lambda r: True, _set("phone", messy_phone)),
        ("date_chinese_format", "start_date", lambda r: True, _set("start_date", lambda v, k: zh_iso_date(v))),
        ("credit_code_bad_check", "employer_credit_code", lambda r: True, _set("employer_credit_code", bad_credit)),
    ])


def inject_insurance_faults(rows: list[dict[str, Any]], planner: Planner, rng: random.Random,
                            logical_date: date) -> tuple[list[dict[str, Any]], list[Fault]]:
    """hrss.social_insurance: number_out_of_range (monthly_base × 100, or negative, alternating; only rows with a
    base), duplicate_across_batches (the record delivered again with the same si_no and values but a later
    updated_at, 1–30 days later and before the end of ``logical_date``: a re-sent batch; the copy follows the
    row). Returns (delivered rows, faults)."""
    taken: dict[int, set[str]] = {}
    faults = inject(rows, planner, "hrss", "social_insurance", "si_no", [
        ("number_out_of_range", "monthly_base", lambda r: r["monthly_base"] is not None,
         _set("monthly_base", lambda v, k: v * 100 if k % 2 == 0 else -v)),
    ], taken)
    last = datetime.combine(logical_date, datetime.min.time()) + timedelta(hours=23, minutes=59, seconds=59)
    n = len(rows)
    eligible = lambda i: datetime.fromisoformat(rows[i]["updated_at"]) < last - timedelta(days=1)  # noqa: E731
    dup = planner.choose(planner.count("duplicate_across_batches", n), n, eligible, taken, WHOLE_ROW)
    copies = {}
    for i in dup:
        t = datetime.fromisoformat(rows[i]["updated_at"])
        later = min(t + timedelta(days=rng.randint(1, 30), seconds=rng.randint(0, 86_399)), last)
        copies[i] = dict(rows[i], updated_at=later.strftime("%Y-%m-%d %H:%M:%S"))
        faults.append(Fault("hrss", "social_insurance", rows[i]["si_no"], WHOLE_ROW, "duplicate_across_batches",
                            f"1 row updated {rows[i]['updated_at']}",
                            f"2 rows, copy updated {copies[i]['updated_at']}"))
    delivered = []
    for i, row in enumerate(rows):
        delivered.append(row)
        if i in copies:
            delivered.append(copies[i])
    return delivered, faults


def inject_address_faults(rows: list[dict[str, Any]], planner: Planner) -> list[Fault]:
    """address.standard_address: division_code_lost_zeros (only codes with leading zeros in a part),
    coord_swapped (lng and lat exchanged) and number_out_of_range (lng = lat = 0.0) on the pseudo-column
    ``coordinates`` (values recorded as JSON {"lng", "lat"})."""
    def coords(fn: Callable[[float, float], tuple[float, float]]) -> Change:
        def change(row: dict[str, Any], k: int) -> tuple[Any, Any]:
            old = {"lng": row["lng"], "lat": row["lat"]}
            row["lng"], row["lat"] = fn(row["lng"], row["lat"])
            return old, {"lng": row["lng"], "lat": row["lat"]}
        return change
    return inject(rows, planner, "address", "standard_address", "address_id", [
        ("division_code_lost_zeros", "division_code", lambda r: lost_zeros(r["division_code"]) != r["division_code"],
         _set("division_code", lambda v, k: lost_zeros(v))),
        ("coord_swapped", "coordinates", lambda r: True, coords(lambda x, y: (y, x))),
        ("number_out_of_range", "coordinates", lambda r: True, coords(lambda x, y: (0.0, 0.0))),
    ])


def inject_application_faults(docs: list[dict[str, Any]], planner: Planner) -> list[Fault]:
    """zhengwu.applications: doc_unknown_field (an extra top-level field ``tmp_sync_flag: '1'``),
    doc_field_renamed (``applicant.id_no`` renamed ``applicant.idcard``), date_chinese_format (``submitted_at`` as
    the string '2025年6月3日 10:22:05', local time), phone_formatting (``applicant.phone``), id_embedded_space
    (``applicant.id_no``), business_key_null (``app_no``), name_rare_char (``applicant.name``)."""
    from sample.departments import LOCAL

    def extra(row: dict[str, Any], k: int) -> tuple[Any, Any]:
        row["tmp_sync_flag"] = "1"
        return None, "1"

    def renamed(row: dict[str, Any], k: int) -> tuple[Any, Any]:
        a = row["applicant"]
        a["idcard"] = a.pop("id_no")
        return "id_no", "idcard"

    def zh_submitted(v: datetime, k: int) -> str:
        return zh_datetime(v.astimezone(LOCAL))
    return inject(docs, planner, "zhengwu", "applications", "app_no", [
        ("doc_field_renamed", "applicant.id_no", lambda r: True, renamed),
        ("id_embedded_space", "applicant.id_no", lambda r: True, _set("applicant.id_no", lambda v, k: spaced_id(v))),
        ("doc_unknown_field", "tmp_sync_flag", lambda r: True, extra),
        ("date_chinese_format", "submitted_at", lambda r: True, _set("submitted_at", zh_submitted)),
        ("phone_formatting", "applicant.phone", lambda r: True, _set("applicant.phone", messy_phone)),
        ("name_rare_char", "applicant.name", lambda r: True, _set("applicant.name", rare_name)),
        ("business_key_null", "app_no", lambda r: True, _set("app_no", lambda v, k: None)),
    ])


def plan_gbk_files(names: list[str], planner: Planner) -> tuple[set[str], list[Fault]]:
    """file_gbk_encoded: which CSV files of the zhengwu drop (only the ``eligible`` names given) are delivered in
    GBK, the manifest saying ``"encoding": "gbk"``. Row key = file name, column '*'. Returns (names, faults)."""
    picked = planner.choose(planner.count("file_gbk_encoded", len(names)), len(names), lambda i: True, {}, WHOLE_ROW)
    chosen = {names[i] for i in picked}
    return chosen, [Fault("zhengwu", "evaluations", n, WHOLE_ROW, "file_gbk_encoded", "utf-8", "gbk")
                    for n in sorted(chosen)]


