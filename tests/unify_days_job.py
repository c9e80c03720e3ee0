"""The pipeline work of ``tests/test_unify_days.py``, run in a process of its own in the background of the test
session (:class:`tests.servers.BackgroundJob`, started right after collection), so the rest of the suite runs
meanwhile: two business days of a 40-resident sample municipality (seed 20250630, embedded sources, Data Docs
off, Spark tuned for tiny data) through extract, validate and unify, in one GovLake home.

Usage: ``python -m tests.unify_days_job HOME OUT_JSON``. Writes to ``OUT_JSON``::

    {"before": [residence rows after day N], "after": [... after day N+1], "links": [[record_key, person_id,
     batch_date], ...], "changes": [rows of truth/changes.csv], "second_residence": {"inserted", "updated"}}

(residence rows: ``[person_id, community_code, address, valid_from, valid_to, is_current]``, dates as ISO text).
"""
from __future__ import annotations

import csv
import datetime as dt
import json
import os
import sys
from pathlib import Path

DAY = dt.date(2025, 6, 30)
NEXT = DAY + dt.timedelta(days=1)
RESIDENTS = 40
SEED = 20250630


def _plain(value):
    return value.isoformat() if isinstance(value, (dt.date, dt.datetime)) else value


def main(argv: list[str]) -> int:
    home, out = Path(argv[0]), Path(argv[1])
    os.environ.update({"GOVLAKE_HOME": str(home), "GOVLAKE_SOURCES": "embedded", "GOVLAKE_DATA_DOCS": "0",
                       "GOVLAKE_SPARK_TINY": "1"})
    from jobs.config import Settings
    from jobs.pipeline import run_extract, run_unify, run_validate
    from jobs.sample.generate import generate
    from jobs.spark import get_spark

    settings = Settings.from_env()
    spark = get_spark(settings, app_name="govlake-test-unify-days", tiny=True)
    sample = dict(residents=RESIDENTS, seed=SEED, logical_date=DAY, target="embedded", out=settings.sources_dir)

    def run_day(day):
        run_extract(spark, settings, day)
        run_validate(spark, settings, day)
        return run_unify(spark, settings, day)

    def residence():
        rows = (spark.read.format("delta").load(settings.table_path("unified", "person_residence"))
                .select("person_id", "community_code", "address", "valid_from", "valid_to", "is_current").collect())
        return [[_plain(v) for v in r] for r in rows]

    generate(**sample)
    run_day(DAY)
    before = residence()
    generate(**sample, days=2)  # the same sample one day further: its day N rows are identical
    with open(settings.sources_dir / "truth" / "changes.csv", encoding="utf-8") as fh:
        changes = list(csv.DictReader(fh))
    second = run_day(NEXT)
    after = residence()
    links = [[r.record_key, r.person_id, _plain(r.batch_date)] for r in
             spark.read.format("delta").load(settings.table_path("unified", "person_link"))
             .select("record_key", "person_id", "batch_date").collect()]
    out.write_text(json.dumps({"before": before, "after": after, "links": links, "changes": changes,
                               "second_residence": second["person_residence"]}, ensure_ascii=False),
                   encoding="utf-8")
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
