"""Deterministic generator of the sample municipality's departmental sources (石家庄市, 130100).

Usage::

    python -m sample.generate --residents 2000 --seed 20250630 --logical-date 2025-06-30 \\
        --target embedded --out var/sources
    python -m sample.generate --target servers --pg-url postgresql+psycopg://... \\
        --mongo-url mongodb://127.0.0.1:27018/

Layouts, conventions and fault kinds: docs/sample_municipality.md.
"""
from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict
from datetime import date, timedelta
from pathlib import Path

from faker import Faker
from shapely.geometry import Point
from shapely.ops import unary_union
from shapely.prepared import prep

from govlake.core.config import REFERENCE_DIR, SAMPLE_LOGICAL_DATE, Settings
from sample import daily, grids, writers
from sample import departments as dept
from sample import faults as flt
from sample import more_departments as more
from sample import more_faults as mflt
from sample import reference as ref
from sample.population import Population

LOG = logging.getLogger("sample.generate")
DEFAULT_RESIDENTS = 2000
DEFAULT_SEED = 20250630
TARGETS = ("embedded", "servers")
DEFAULT_LOGICAL_DATE = date.fromisoformat(SAMPLE_LOGICAL_DATE)
TRUTH_PERSON_COLUMNS = ("person_key", "id_no", "name", "sex_code", "birth_date", "ethnic_code", "household_no",
                        "community_code", "district_code", "lng", "lat", "education", "marital_status",
                        "registration_type")


def _outside_point_factory(districts: list[ref.District], rng: random.Random):
    """A function drawing points (lng, lat, 6 decimals) within 0.5° of the city's bounds but in no district."""
    union = unary_union([d.geometry for d in districts])
    inside = prep(union)
    minx, miny, maxx, maxy = union.bounds

    def draw() -> tuple[float, float]:
        while True:
            lng = round(rng.uniform(minx - 0.5, maxx + 0.5), 6)
            lat = round(rng.uniform(miny - 0.5, maxy + 0.5), 6)
            if not inside.intersects(Point(lng, lat)):
                return lng, lat
    return draw


def generate(residents: int = DEFAULT_RESIDENTS, seed: int = DEFAULT_SEED,
             logical_date: date = DEFAULT_LOGICAL_DATE, target: str = "embedded",
             out: Path | str | None = None, pg_url: str | None = None, mongo_url: str | None = None,
             *, fault_rates: Mapping[str, float] | None = None, default_fault_rate: float = flt.DEFAULT_RATE,
             fault_min_rows: int = 1, reference_dir: Path = REFERENCE_DIR, days: int = 1,
             drop_formats: Mapping[str, str] | None = None, mongo_prefix: str = "") -> dict[str, int]:
    """Generate the sample municipality's sources and their ground truth.

    Args:
        residents: number of residents (≥ 1); all are in the household registry.
        seed: seed of every random draw (``random.Random`` streams and ``Faker('zh_CN')``).
        logical_date: the business date the sources are current on (Asia/Shanghai), day N.
        target: ``'embedded'`` — ``<out>/hukou.sqlite``, ``civil.sqlite``, ``health.sqlite``, ``hrss.sqlite``,
            ``address.sqlite``, ``grid_events.jsonl``, ``applications.jsonl``; ``'servers'`` — PostgreSQL schemas
            ``hukou``, ``civil``, ``health``, ``hrss``, ``address`` at ``pg_url`` and MongoDB databases ``wangge``
            (collection ``events``) and ``zhengwu`` (collection ``applications``) at ``mongo_url``. Both write
            ``<out>/inbox/zhengwu/<date>/`` and ``<out>/truth/``.
        out: output folder (created); default ``Settings.from_env().sources_dir`` (``$GOVLAKE_HOME/sources``).
        pg_url, mongo_url: server URLs, required for ``target='servers'``.
        fault_rates: {fault_kind: share of a table's rows}, overriding ``default_fault_rate`` (0.015) per kind
            (a kind's rate applies in every table that has it).
        fault_min_rows: a table with at least this many rows gets at least one instance of each of its fault
            kinds that has an eligible row (default 1; the brief's minimum guarantee is 50).
        reference_dir: the reference data folder (default ``schemas/reference``).
        days: number of days generated (≥ 1): day N = ``logical_date``, then N+1 … with the changes of
            :mod:`sample.daily` (``truth/changes.csv``, ``truth/persons_<day>.csv``, one file drop per day).
            The databases hold the state of the last day.
        drop_formats: {file stem: format} of the zhengwu drop files ``messages`` and ``evaluations``; formats
            'csv' (UTF-8, the default), 'csv-gbk', 'jsonl', 'xlsx'.
        mongo_prefix: servers target: prefix of the MongoDB database names (``'n1_'`` writes ``n1_wangge`` and
            ``n1_zhengwu``), so a second sample can sit beside the standard one on the same server.

    Returns:
        delivered rows per table (of the last day): {"hukou.persons", "hukou.households", "hukou.residence_changes",
        "civil.subsistence_allowance", "civil.marriages" and "civil.elderly_subsidy" (day N), "health.births",
        "health.deaths", "hrss.employment",
        "hrss.social_insurance", "address.standard_address", "wangge.events", "zhengwu.applications",
        "zhengwu.messages", "zhengwu.evaluations", "truth.persons", "truth.faults", "truth.changes"}
        (zhengwu.messages / evaluations and truth.persons count day N).
    Raises:
        ValueError: unknown ``target``, ``residents`` < 1, ``days`` < 1, an unknown drop format or file, or a
            server URL missing for ``target='servers'``.
    Same arguments give byte-identical embedded output (no wall clock, no unseeded randomness).
    """
    formats = check_arguments(residents, target, pg_url, mongo_url, days, drop_formats)
    out = Path(out) if out is not None else Settings.from_env().sources_dir
    out.mkdir(parents=True, exist_ok=True)
    truth = out / "truth"
    day = logical_date.isoformat()
    # With one day every table is delivered (and freed) as soon as its faults are in, which bounds memory at
    # 1,000,000 residents; with later days the tables of day N are kept and delivered after the last day.
    keep = days > 1
    counts: dict[str, int] = {}
    kept: dict[str, list] = {}
    pending: list[tuple] = []

    clock = [time.perf_counter()]

    def _phase(name: str) -> None:  # progress on the log only (never in the output): seconds per phase
        now = time.perf_counter()
        LOG.info("%-20s %7.1f s", name, now - clock[0])
        clock[0] = now

    districts = ref.load_districts(reference_dir)
    fake = Faker("zh_CN")
    fake.seed_instance(seed)
    pop = Population(districts, residents, seed, logical_date, fake).build()
    _phase("population")

    with writers.Sink(target, out, pg_url, mongo_url, mongo_prefix) as sink, \
            writers.CsvAppender(truth / "links.csv", more.LINK_COLUMNS) as links:

        def deliver(name: str, rows: list) -> None:
            counts[name] = len(rows)
            if keep:
                kept[name] = rows
                pending.append((name, rows))
            else:
                _deliver(sink, name, rows)

        fault_rng = random.Random(f"{seed}:faults")
        planner = flt.Planner(fault_rng, fault_rates, default_fault_rate, fault_min_rows)
        persons, faults = flt.inject_person_faults(dept.person_rows(pop), planner)
        deliver("hukou.persons", persons)
        del persons
        deliver("hukou.households", dept.household_rows(pop))
        _phase("hukou")
        allowances = dept.allowance_rows(pop, seed, logical_date)
        allowance_links = [("civil", "subsistence_allowance", a["case_no"], "applicant", p)
                           for a, p in zip(allowances, _allowance_heads(pop, allowances), strict=False)]
        header, messages = ref.load_messages(reference_dir)
        events = dept.event_docs(pop, seed, logical_date, ref.load_categories(reference_dir),
                                 ref.load_labeled_messages(reference_dir), messages)
        event_points = [(e["location"]["community_code"], e["location"]["lng"], e["location"]["lat"])
                        for e in events]  # true points, before faults move some (the grids are drawn around them)
        hotline = dept.hotline_subset(header, messages, residents, seed)
        faults += flt.inject_civil_faults(allowances, planner)
        deliver("civil.subsistence_allowance", allowances)
        marriages, marriage_links = dept.marriage_rows(pop, seed, logical_date)
        deliver("civil.marriages", marriages)
        del marriages
        elderly, elderly_links = dept.elderly_subsidy_rows(pop, seed, logical_date)
        deliver("civil.elderly_subsidy", elderly)
        del elderly
        faults += flt.inject_event_faults(events, planner, _outside_point_factory(districts, fault_rng))
        deliver("wangge.events", events)
        del events
        _phase("civil + wangge")

        more_rng = random.Random(f"{seed}:faults:more")
        planner2 = flt.Planner(more_rng, fault_rates, default_fault_rate, fault_min_rows)
        births, birth_links = more.birth_rows(pop, seed, logical_date)
        links.write(birth_links)
        faults += mflt.inject_birth_faults(births, planner2)
        deliver("health.births", births)
        deaths, deceased = more.death_rows(pop, seed, logical_date, fake)
        faults += mflt.inject_death_faults(deaths, planner2, more_rng)
        deliver("health.deaths", deaths)
        _phase("health")
        employment, insurance, hrss_links = more.employment_rows(pop, seed, logical_date, fake)
        links.write(hrss_links)
        del hrss_links
        faults += mflt.inject_employment_faults(employment, planner2, more_rng)
        deliver("hrss.employment", employment)
        del employment
        insurance, ins_faults = mflt.inject_insurance_faults(insurance, planner2, more_rng, logical_date)
        faults += ins_faults
        deliver("hrss.social_insurance", insurance)
        del insurance
        _phase("hrss")
        addresses, _ = more.address_rows(pop, seed, logical_date)
        faults += mflt.inject_address_faults(addresses, planner2)
        deliver("address.standard_address", addresses)
        del addresses
        _phase("address")
        applications, app_links = more.application_docs(pop, seed, logical_date, fake)
        links.write(app_links)
        links.write(allowance_links)
        links.write(marriage_links)
        links.write(elderly_links)
        evaluations = more.evaluation_rows(applications, seed,
                                           logical_date - timedelta(days=more.APPLICATION_WINDOW_DAYS), logical_date)
        faults += mflt.inject_application_faults(applications, planner2)
        deliver("zhengwu.applications", applications)
        gbk, gbk_faults = mflt.plan_gbk_files(["evaluations.csv"] if formats["evaluations"] == "csv" else [],
                                              planner2)
        faults += gbk_faults
        _phase("zhengwu")
        # drawn after every other table from its own stream, so no earlier output changes
        moves, move_links = dept.residence_change_rows(pop, seed, logical_date)
        links.write(move_links)
        del move_links
        deliver("hukou.residence_changes", moves)
        del moves
        eval_fmt = "csv-gbk" if gbk else formats["evaluations"]
        writers.write_drop(out / "inbox" / "zhengwu" / day, "zhengwu", day,
                           [("messages", formats["messages"], header, hotline),
                            ("evaluations", eval_fmt, more.EVALUATION_HEADER, evaluations)])
        counts["truth.persons"] = writers.write_csv(truth / "persons.csv", TRUTH_PERSON_COLUMNS,
                                                    (daily.truth_row(p, h) for h in pop.households
                                                     for p in h.members))
        day_n_households = grids.household_rows(pop)  # day N, before later days move anyone
        writers.write_csv(truth / "households.csv", grids.TRUTH_HOUSEHOLD_COLUMNS, day_n_households)

        changes: list[daily.Change] = []
        if keep:
            counters = {"person": pop._next_person, "cert": _next(kept["health.births"], "cert_no", 1),
                        "death": _next(kept["health.deaths"], "death_no", 2),
                        "address": _next(kept["address.standard_address"], "address_id", 2),
                        "event": _next(kept["wangge.events"], "event_no", 2),
                        "move": _next(kept["hukou.residence_changes"], "change_no", 2)}
            for k in range(1, days):
                d = logical_date + timedelta(days=k)
                changes += daily.apply_day(d, seed, pop, kept, faults, counters)
                writers.write_csv(truth / f"persons_{d.isoformat()}.csv", TRUTH_PERSON_COLUMNS,
                                  (daily.truth_row(p, h) for h in pop.households for p in h.members))
                day_msgs = _day_messages(header, messages, residents, seed, d)
                day_evals = more.evaluation_rows(applications, seed, d, d)
                writers.write_drop(out / "inbox" / "zhengwu" / d.isoformat(), "zhengwu", d.isoformat(),
                                   [("messages", formats["messages"], header, day_msgs),
                                    ("evaluations", formats["evaluations"], more.EVALUATION_HEADER, day_evals)])
            for name, _ in pending:
                counts[name] = len(kept[name])
                _deliver(sink, name, kept[name])

    writers.write_csv(truth / "faults.csv", flt.FAULT_COLUMNS,
                      ((f.source, f.table, f.row_key, f.column, f.fault_kind, f.original_value, f.delivered_value,
                        f.row_locator)
                       for f in faults))
    writers.write_csv(truth / "grids.csv", ("grid_code", "community_code", "worker_id", "worker_name"),
                      ((g.grid_code, g.community_code, g.worker_id, g.worker_name)
                       for g in sorted(pop.grids.values(), key=lambda g: g.grid_code)))
    writers.write_csv(truth / "deceased.csv", more.DECEASED_COLUMNS, deceased)
    grids.publish(out, districts, pop, day_n_households, event_points)  # the grid-management centre's boundaries
    writers.write_csv(truth / "changes.csv", daily.CHANGE_COLUMNS, (tuple(asdict(c).values()) for c in changes))

    _phase("truth + later days")
    counts.update({"zhengwu.messages": len(hotline), "zhengwu.evaluations": len(evaluations),
                   "truth.faults": len(faults), "truth.changes": len(changes)})
    counts = {k: counts[k] for k in COUNT_KEYS}
    by_kind: dict[str, dict[str, int]] = {}
    for (src, table, kind), n in sorted(Counter((f.source, f.table, f.fault_kind) for f in faults).items()):
        by_kind.setdefault(f"{src}.{table}", {})[kind] = n
    summary = {"seed": seed, "residents": residents, "logical_date": day, "target": target, "days": days,
               "counts": counts, "faults": by_kind}
    (truth / "summary.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2, sort_keys=True) + "\n",
                                        encoding="utf-8")
    return counts


#: Keys (and order) of the counts :func:`generate` returns.
COUNT_KEYS = ("hukou.persons", "hukou.households", "hukou.residence_changes", "civil.subsistence_allowance",
              "civil.marriages", "civil.elderly_subsidy", "health.births", "health.deaths", "hrss.employment",
              "hrss.social_insurance", "address.standard_address", "wangge.events", "zhengwu.applications",
              "zhengwu.messages", "zhengwu.evaluations", "truth.persons", "truth.faults", "truth.changes")
#: Where each delivered table goes: SQL (schema, table) or documents (database, collection, JSON lines file).
DOC_TARGETS = {"wangge.events": ("wangge", "events", "grid_events.jsonl"),
               "zhengwu.applications": ("zhengwu", "applications", "applications.jsonl")}


def _deliver(sink: writers.Sink, name: str, rows: list) -> None:
    """Hand one finished table to the sink (documents for wangge.events / zhengwu.applications, else SQL)."""
    if name in DOC_TARGETS:
        database, collection, jsonl = DOC_TARGETS[name]
        sink.docs(database, collection, jsonl, rows)
    else:
        schema, table = name.split(".")
        sink.sql(schema, table, rows)


def check_arguments(residents: int, target: str, pg_url: str | None, mongo_url: str | None, days: int,
                    drop_formats: Mapping[str, str] | None) -> dict[str, str]:
    """Validate :func:`generate`'s arguments; returns the drop formats {"messages": fmt, "evaluations": fmt}.

    Raises:
        ValueError: unknown ``target``, ``residents`` < 1, ``days`` < 1, an unknown drop format or file, or a
            server URL missing for ``target='servers'``.
    """
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, not {target!r}")
    if target == "servers" and not (pg_url and mongo_url):
        raise ValueError("target 'servers' needs pg_url and mongo_url")
    if residents < 1:
        raise ValueError("residents must be at least 1")
    if days < 1:
        raise ValueError("days must be at least 1")
    formats = {"messages": "csv", "evaluations": "csv"}
    for stem, fmt in (drop_formats or {}).items():
        if stem not in formats or fmt not in writers.DROP_FORMATS:
            raise ValueError(f"drop format {stem}={fmt!r}: files are {sorted(formats)}, formats {writers.DROP_FORMATS}")
        formats[stem] = fmt
    return formats


def _next(rows: list[dict], key: str, digits_from: int) -> int:
    """The next free sequence number of a key such as 'SW12345678' (digits after ``digits_from`` characters)."""
    nums = [int(r[key][digits_from:]) for r in rows if r.get(key)]
    return max(nums) + 1 if nums else 10_000_000


def _allowance_heads(pop: Population, allowances: list[dict]) -> list[str]:
    """person_no of each allowance case's applicant (the household head with that ID), in case order."""
    by_id = {h.members[0].id_no: h.members[0].person_no for h in pop.households}
    return [by_id[a["applicant_id_no"]] for a in allowances]


def _day_messages(header: list[str], rows: list[list[str]], residents: int, seed: int, day: date) -> list[list[str]]:
    """The message-board rows of a later day's drop: round(residents / 100) rows (at least 1), seeded by the day."""
    rng = random.Random(f"{seed}:zhengwu:{day}")
    n = min(len(rows), max(1, round(residents / 100)))
    return [rows[i] for i in sorted(rng.sample(range(len(rows)), n))]


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; prints the counts as JSON. Returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m sample.generate", description=__doc__.splitlines()[0])
    parser.add_argument("--residents", type=int, default=DEFAULT_RESIDENTS)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--logical-date", type=date.fromisoformat, default=date.fromisoformat(SAMPLE_LOGICAL_DATE))
    parser.add_argument("--target", choices=TARGETS, default="embedded")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: $GOVLAKE_HOME/sources, i.e. var/sources)")
    parser.add_argument("--pg-url", default=None)
    parser.add_argument("--mongo-url", default=None)
    parser.add_argument("--fault-rate", type=float, default=flt.DEFAULT_RATE,
                        help="share of rows per fault kind (default 0.015)")
    parser.add_argument("--fault-min-rows", type=int, default=1,
                        help="tables with at least this many rows get every fault kind at least once")
    parser.add_argument("--days", type=int, default=1, help="days generated: 1 = day N only, 2 = N and N+1, …")
    parser.add_argument("--drop-format", action="append", default=[], metavar="FILE=FORMAT",
                        help="zhengwu drop file format, e.g. evaluations=xlsx (csv, csv-gbk, jsonl, xlsx); repeatable")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    try:
        formats = dict(item.split("=", 1) for item in args.drop_format)
    except ValueError:
        parser.error("--drop-format takes FILE=FORMAT")
    try:  # only argument errors are usage errors; a ValueError from inside generate() is a bug and propagates
        check_arguments(args.residents, args.target, args.pg_url, args.mongo_url, args.days, formats)
    except ValueError as exc:
        parser.error(str(exc))
    counts = generate(args.residents, args.seed, args.logical_date, args.target, args.out, args.pg_url,
                      args.mongo_url, default_fault_rate=args.fault_rate, fault_min_rows=args.fault_min_rows,
                      days=args.days, drop_formats=formats)
    print(json.dumps(counts, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
