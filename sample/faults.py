"""Fault injection for the sample sources: realistic defects of departmental data, each recorded as ground truth.

A fault changes one delivered value (or duplicates one delivered row); the true value stays in
``truth/persons.csv``. Every injected fault is one :class:`Fault` record (written to ``truth/faults.csv``).
"""
from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

# the manifest's format, re-exported for the generator's modules
from govlake.quality.manifest import FAULT_COLUMNS as FAULT_COLUMNS
from govlake.quality.manifest import PSEUDO_COLUMNS as PSEUDO_COLUMNS

#: Fault kinds per (source, table), in the order they are injected.
PERSON_FAULTS = ("id_bad_checksum", "id_lowercase_x", "id_fullwidth", "id_null", "id_float_mangled",
                 "sex_id_mismatch", "birth_date_impossible", "ethnic_lost_zero", "name_dot_variant",
                 "duplicate_row")
CIVIL_FAULTS = ("id_bad_checksum", "birth_date_impossible", "id_15_digit")
EVENT_FAULTS = ("event_outside_grid", "doc_type_drift")
#: Default share of a table's rows that get each fault kind.
DEFAULT_RATE = 0.015
#: Column name recorded for a whole-row fault (duplicate_row).
WHOLE_ROW = "*"
#: GB 11643-1999 check characters for (Σ a_i·W_i) mod 11 = 0..10 (same order as govlake.codes.code_lists).
ID_CHECK_CHARS = "10X98765432"
FULLWIDTH = str.maketrans("0123456789Xx", "０１２３４５６７８９Ｘｘ")


@dataclass(frozen=True, slots=True)
class Fault:
    """One injected fault: a row of ``truth/faults.csv`` (values as text; '' for null).

    ``row_locator`` is '' unless the fault nulls the row's business key (``business_key_null``): then it is a JSON
    object ``{delivered column: delivered value as text (null for NULL)}`` that identifies the delivered row without
    its key (``row_key`` keeps the true key), e.g. ``{"_id": "ObjectId(65ab…)"}`` for a document.
    """

    source: str
    table: str
    row_key: str
    column: str
    fault_kind: str
    original_value: str
    delivered_value: str
    row_locator: str = ""


def text(value: Any) -> str:
    """Value as written in faults.csv: '' for None, JSON for dicts, else ``str``."""
    if value is None:
        return ""
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


def bad_checksum(id18: str) -> str:
    """The ID with its GB 11643 check character replaced by the next wrong one (cyclic over '10X98765432')."""
    i = ID_CHECK_CHARS.index(id18[17].upper())
    return id18[:17] + ID_CHECK_CHARS[(i + 1) % 11]


def float_mangled(id18: str) -> str:
    """An all-digit 18-digit ID as a spreadsheet shows it in scientific notation, e.g. '1.30102199E+17'."""
    return f"{float(id18):.8E}"


def impossible_day(year: int, month: int) -> tuple[int, int]:
    """A (month, day) that does not exist: day 31 of a 30-day month, else 30 February."""
    return (month, 31) if month in (4, 6, 9, 11) else (2, 30)


def legacy_15(id18: str) -> str:
    """The legacy 15-digit ID (GB 11643-1989) of an 18-digit one: drop the century and the check character."""
    return id18[:6] + id18[8:17]


class Planner:
    """Chooses which rows get which fault.

    Args:
        rng: seeded random source.
        rates: {fault_kind: share of rows}; kinds not given use ``default_rate``.
        min_rows: a table with at least this many rows gets at least one instance of every kind that has an
            eligible row (the brief's minimum is 50; the generator's default is 1).
    """

    def __init__(self, rng: random.Random, rates: Mapping[str, float] | None, default_rate: float, min_rows: int):
        self.rng = rng
        self.rates = dict(rates or {})
        self.default_rate = default_rate
        self.min_rows = min_rows

    def count(self, kind: str, n_rows: int, minimum: int = 1) -> int:
        """How many rows of an ``n_rows`` table get ``kind``: round(rate × rows), at least ``minimum``
        when ``n_rows`` ≥ ``min_rows``."""
        n = int(round(self.rates.get(kind, self.default_rate) * n_rows))
        if n_rows >= self.min_rows and self.rates.get(kind, self.default_rate) > 0:
            n = max(n, minimum)
        return n

    def choose(self, n: int, n_rows: int, eligible: Callable[[int], bool], taken: dict[int, set[str]],
               column: str) -> list[int]:
        """Pick up to ``n`` row indexes satisfying ``eligible``: a uniform sample of the rows without any fault
        first, then (if those are too few) of the rows whose faults are on other columns; never more than half
        of the eligible rows (but at least one), so clean examples remain. Marks ``column`` as taken on each
        picked row. Returns sorted indexes. O(rows) per call (one pass), O(n) random draws."""
        if n <= 0:
            return []
        elig = [i for i in range(n_rows) if eligible(i)]
        k = min(n, max(1, len(elig) // 2), len(elig))
        clean = [i for i in elig if i not in taken] if taken else elig
        if len(clean) >= k:
            picked = self.rng.sample(clean, k)
        else:
            other = [i for i in elig if i in taken and column not in taken[i] and WHOLE_ROW not in taken[i]]
            picked = clean + self.rng.sample(other, min(k - len(clean), len(other)))
        for i in picked:
            taken.setdefault(i, set()).add(column)
        return sorted(picked)


def _fault(out: list[Fault], source: str, table: str, key: str, column: str, kind: str, old: Any, new: Any) -> None:
    out.append(Fault(source, table, key, column, kind, text(old), text(new)))


def inject_person_faults(rows: list[dict[str, Any]], planner: Planner) -> tuple[list[dict[str, Any]], list[Fault]]:
    """Inject the hukou.persons faults into delivered rows (dicts in the ``persons`` column order).

    Kinds (column): id_bad_checksum, id_lowercase_x (only IDs ending 'X'), id_fullwidth, id_null,
    id_float_mangled (only all-digit IDs) on ``id_no``; sex_id_mismatch (``sex_code`` flipped, ID kept);
    birth_date_impossible (``birth_date`` e.g. '19810230'); ethnic_lost_zero (``ethnic_code`` '01' → '1');
    name_dot_variant (``name``: '·' → '.' or '•'); duplicate_row (an exact copy inserted right after the row).
    The ``rows`` dicts are modified in place. Returns (delivered rows with duplicates, faults).
    """
    src, table = "hukou", "persons"
    faults: list[Fault] = []
    taken: dict[int, set[str]] = {}
    n = len(rows)

    def pick(kind: str, column: str, eligible: Callable[[int], bool], minimum: int = 1) -> list[int]:
        return planner.choose(planner.count(kind, n, minimum), n, eligible, taken, column)

    has_id = lambda i: rows[i]["id_no"] is not None  # noqa: E731
    # kinds with few eligible rows go first so that the unrestricted kinds cannot use those rows up
    plans = [
        ("id_lowercase_x", lambda i: has_id(i) and rows[i]["id_no"].endswith("X"), lambda v: v[:17] + "x"),
        ("id_float_mangled", lambda i: has_id(i) and rows[i]["id_no"].isdigit(), float_mangled),
        ("id_bad_checksum", has_id, bad_checksum),
        ("id_fullwidth", has_id, lambda v: v.translate(FULLWIDTH)),
        ("id_null", has_id, lambda v: None),
    ]
    for kind, eligible, change in plans:
        for i in pick(kind, "id_no", eligible):
            row = rows[i]
            old, row["id_no"] = row["id_no"], change(row["id_no"])
            _fault(faults, src, table, row["person_no"], "id_no", kind, old, row["id_no"])
    for i in pick("sex_id_mismatch", "sex_code", lambda i: True):
        row = rows[i]
        old, row["sex_code"] = row["sex_code"], "2" if row["sex_code"] == "1" else "1"
        _fault(faults, src, table, row["person_no"], "sex_code", "sex_id_mismatch", old, row["sex_code"])
    for i in pick("birth_date_impossible", "birth_date", lambda i: True):
        row = rows[i]
        year, month = int(row["birth_date"][:4]), int(row["birth_date"][4:6])
        m, d = impossible_day(year, month)
        old, row["birth_date"] = row["birth_date"], f"{year:04d}{m:02d}{d:02d}"
        _fault(faults, src, table, row["person_no"], "birth_date", "birth_date_impossible", old, row["birth_date"])
    for i in pick("ethnic_lost_zero", "ethnic_code", lambda i: rows[i]["ethnic_code"].startswith("0")):
        row = rows[i]
        old, row["ethnic_code"] = row["ethnic_code"], row["ethnic_code"][1:]
        _fault(faults, src, table, row["person_no"], "ethnic_code", "ethnic_lost_zero", old, row["ethnic_code"])
    for k, i in enumerate(pick("name_dot_variant", "name", lambda i: "·" in rows[i]["name"])):
        row = rows[i]
        old, row["name"] = row["name"], row["name"].replace("·", ".•"[k % 2])
        _fault(faults, src, table, row["person_no"], "name", "name_dot_variant", old, row["name"])
    dup = set(pick("duplicate_row", WHOLE_ROW, lambda i: True))
    for i in sorted(dup):
        _fault(faults, src, table, rows[i]["person_no"], WHOLE_ROW, "duplicate_row", "1 row", "2 identical rows")
    delivered: list[dict[str, Any]] = []
    for i, row in enumerate(rows):
        delivered.append(row)
        if i in dup:
            delivered.append(dict(row))
    return delivered, faults


def inject_civil_faults(rows: list[dict[str, Any]], planner: Planner) -> list[Fault]:
    """Inject the civil.subsistence_allowance faults in place.

    Kinds (column): id_bad_checksum and id_15_digit (legacy 15-digit ID, only applicants born before 1984, who
    were first issued one) on ``applicant_id_no``; birth_date_impossible on ``birth_date`` ('2023年2月30日').
    """
    src, table = "civil", "subsistence_allowance"
    faults: list[Fault] = []
    taken: dict[int, set[str]] = {}
    n = len(rows)
    old_enough = lambda i: int(rows[i]["applicant_id_no"][6:10]) < 1984  # noqa: E731
    for i in planner.choose(planner.count("id_15_digit", n), n, old_enough, taken, "applicant_id_no"):
        row = rows[i]
        old, row["applicant_id_no"] = row["applicant_id_no"], legacy_15(row["applicant_id_no"])
        _fault(faults, src, table, row["case_no"], "applicant_id_no", "id_15_digit", old, row["applicant_id_no"])
    for i in planner.choose(planner.count("id_bad_checksum", n), n, lambda i: True, taken, "applicant_id_no"):
        row = rows[i]
        old, row["applicant_id_no"] = row["applicant_id_no"], bad_checksum(row["applicant_id_no"])
        _fault(faults, src, table, row["case_no"], "applicant_id_no", "id_bad_checksum", old, row["applicant_id_no"])
    for i in planner.choose(planner.count("birth_date_impossible", n), n, lambda i: True, taken, "birth_date"):
        row = rows[i]
        year, rest = row["birth_date"].split("年")
        year, month = int(year), int(rest.split("月")[0])
        m, d = impossible_day(year, month)
        old, row["birth_date"] = row["birth_date"], f"{year}年{m}月{d}日"
        _fault(faults, src, table, row["case_no"], "birth_date", "birth_date_impossible", old, row["birth_date"])
    return faults


def inject_event_faults(docs: list[dict[str, Any]], planner: Planner,
                        outside_point: Callable[[], tuple[float, float]]) -> list[Fault]:
    """Inject the wangge.events faults in place.

    Kinds (column): event_outside_grid (``location``: grid_code null, lng/lat from ``outside_point()``, a point
    outside every district; values recorded as JSON {grid_code, lng, lat}); doc_type_drift, alternating between
    ``category`` written as the string 'l1/l2/l3' and ``location.grid_code`` written as an integer (at least two
    instances when possible, so both variants occur).
    """
    src, table = "wangge", "events"
    faults: list[Fault] = []
    taken: dict[int, set[str]] = {}
    n = len(docs)
    for i in planner.choose(planner.count("event_outside_grid", n), n, lambda i: True, taken, "location"):
        loc = docs[i]["location"]
        old = {"grid_code": loc["grid_code"], "lng": loc["lng"], "lat": loc["lat"]}
        loc["grid_code"] = None
        loc["lng"], loc["lat"] = outside_point()
        new = {"grid_code": None, "lng": loc["lng"], "lat": loc["lat"]}
        _fault(faults, src, table, docs[i]["event_no"], "location", "event_outside_grid", old, new)
    drift = planner.choose(planner.count("doc_type_drift", n, minimum=2), n, lambda i: True, taken, "location")
    for k, i in enumerate(drift):
        doc = docs[i]
        if k % 2 == 0:
            old = doc["category"]
            doc["category"] = f"{old['l1']}/{old['l2']}/{old['l3']}"
            _fault(faults, src, table, doc["event_no"], "category", "doc_type_drift", old, doc["category"])
        else:
            old = doc["location"]["grid_code"]
            doc["location"]["grid_code"] = int(old)
            _fault(faults, src, table, doc["event_no"], "location.grid_code", "doc_type_drift", old, int(old))
    return faults
