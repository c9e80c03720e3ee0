"""Analysis services (govlake.analysis.services) on inline fixtures, each checked against an independent
plain-Python/pandas computation on the same rows (exact for counts, 1e-12 for ratios)."""
from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta
from itertools import combinations

import pandas as pd
import pytest

from govlake.analysis import services
from govlake.marts.theme_config import parse_theme

D = date.fromisoformat
EV_SCHEMA = "event_id string, district_code string, grid_code string, category_l1 string, reported_at timestamp"

# (event_id, district, grid, category, reported_at local time)
EVENTS = [
    ("e1", "130102", "g1", "城乡建设", datetime(2025, 6, 2, 9, 5)),     # Mon week 06-02
    ("e2", "130102", "g1", "环境保护", datetime(2025, 6, 3, 23, 0)),
    ("e3", "130102", "g2", "城乡建设", datetime(2025, 6, 10, 9, 0)),   # week 06-09
    ("e4", "130102", "g1", "城乡建设", datetime(2025, 6, 17, 14, 0)),  # week 06-16
    ("e5", "130102", "g1", "环境保护", datetime(2025, 6, 18, 14, 0)),
    ("e6", "130104", "g3", None, datetime(2025, 6, 22, 8, 0)),          # Sunday, week 06-16
    ("e7", None, "g3", "交通运输", datetime(2025, 7, 1, 10, 0)),        # week 06-30, district unknown
    ("e8", "130102", "g2", "城乡建设", datetime(2025, 6, 11, 9, 0)),   # week 06-09
    ("e9", "130102", "g2", "交通运输", datetime(2025, 6, 12, 9, 0)),
    ("e10", "130102", "g1", "城乡建设", datetime(2025, 7, 1, 9, 0)),
]


def _events(spark):
    return spark.createDataFrame(EVENTS, EV_SCHEMA)


def _pdf() -> pd.DataFrame:
    return pd.DataFrame(EVENTS, columns=["event_id", "district_code", "grid_code", "category_l1", "reported_at"])


def _expected_trend(rows, baseline_weeks, min_baseline, z_thr):
    weeks_of = [(g if g is not None else services.NULL_LABEL, d.date() - timedelta(days=d.weekday())) for g, d in rows]
    lo, hi = min(w for _, w in weeks_of), max(w for _, w in weeks_of)
    spine = [lo + timedelta(days=7 * k) for k in range((hi - lo).days // 7 + 1)]
    counts = Counter(weeks_of)
    out = {}
    for g in {g for g, _ in weeks_of}:
        series = [counts.get((g, w), 0) for w in spine]
        for i, w in enumerate(spine):
            base = series[max(0, i - baseline_weeks):i]
            mean = statistics.mean(base) if base else None
            sd = statistics.stdev(base) if len(base) >= 2 else None
            z = (series[i] - mean) / max(sd or 0.0, 1.0) if base else None
            out[(g, w)] = (series[i], series[i] - series[i - 1] if i else None,
                           (series[i] - series[i - 1]) / series[i - 1] if i and series[i - 1] else None,
                           len(base), z, bool(base) and len(base) >= min_baseline and abs(z) >= z_thr)
    return out


def test_weekly_trend_series_change_and_anomaly(spark):
    # a spike: district 130102 has 2, 3, 2 events then 0 then 1 (weeks 06-02..06-30)
    extra = [(f"x{k}", "130102", "g1", "城乡建设", datetime(2025, 6, 24, 9, k)) for k in range(9)]  # 9 more in 06-23
    rows = EVENTS + extra
    df = spark.createDataFrame(rows, EV_SCHEMA)
    got = {(r.group_key, r.week_start): r for r in
           services.weekly_trend(df, "reported_at", ["district_code"], baseline_weeks=3, min_baseline=3,
                                 z_threshold=3.0).collect()}
    exp = _expected_trend([(r[1], r[4]) for r in rows], 3, 3, 3.0)
    assert set(got) == set(exp) and len(exp) == 15  # 3 groups × 5 weeks, zero weeks included
    for k, (n, change, pct, nb, z, anomaly) in exp.items():
        r = got[k]
        assert (r.n, r.change, r.baseline_weeks, r.is_anomaly) == (n, change, nb, anomaly), k
        assert r.change_pct == (pytest.approx(pct) if pct is not None else None), k
        assert r.z == (pytest.approx(z) if z is not None else None), k
    assert got[("130102", D("2025-06-23"))].is_anomaly            # 9 vs baseline 2,3,2 → z = 8
    assert sum(r.is_anomaly for r in got.values()) == 1
    with pytest.raises(ValueError):
        services.weekly_trend(df, "reported_at", baseline_weeks=0)


def test_category_time_association_subject(spark):
    from pyspark.sql import functions as F

    ev = _events(spark).withColumn("is_closed", F.col("event_id").isin("e1", "e3", "e4"))
    cat = services.category_shares(ev, "category_l1", ["district_code"]).collect()
    tim = services.time_profile(ev, "reported_at", ["district_code"], ("hour", "weekday")).collect()
    ev_w = ev.withColumn("wk", F.trunc(F.to_date("reported_at"), "week"))
    ass = services.association(ev_w, ["grid_code", "wk"], "category_l1").collect()
    sub = services.subject_profile(ev, ["grid_code"], "category_l1", "reported_at", "is_closed").collect()
    pdf = _pdf()
    pdf["g"] = pdf["district_code"].fillna(services.NULL_LABEL)
    pdf["c"] = pdf["category_l1"].fillna("未分类")

    # category: counts, shares, ranks (n desc, name asc)
    exp_cat = {}
    for g, grp in pdf.groupby("g"):
        vc = sorted(Counter(grp["c"]).items(), key=lambda kv: (-kv[1], kv[0]))
        for rank, (c, n) in enumerate(vc, 1):
            exp_cat[(g, c)] = (n, n / len(grp), rank)
    assert {(r.group_key, r.category): (r.n, r.share, r.rank) for r in cat} == exp_cat

    # time: every bucket present, counts from pandas
    exp_t = {}
    for g, grp in pdf.groupby("g"):
        hours, wds = Counter(grp["reported_at"].dt.hour), Counter(grp["reported_at"].dt.weekday + 1)
        exp_t.update({(g, "hour", h): hours.get(h, 0) for h in range(24)})
        exp_t.update({(g, "weekday", d): wds.get(d, 0) for d in range(1, 8)})
    assert {(r.group_key, r.profile, r.bucket): r.n for r in tim} == exp_t
    assert all(r.share == pytest.approx(exp_t[(r.group_key, r.profile, r.bucket)]
                                        / (pdf["g"] == r.group_key).sum()) for r in tim)

    # association: baskets = (grid, ISO week) with at least one non-NULL category
    baskets = defaultdict(set)
    for _, r in pdf.dropna(subset=["category_l1"]).iterrows():
        baskets[(r.grid_code, r.reported_at.date() - timedelta(days=r.reported_at.weekday()))].add(r.category_l1)
    n_item, n_pair = Counter(), Counter()
    for items in baskets.values():
        n_item.update(items)
        n_pair.update(combinations(sorted(items), 2))
    N = len(baskets)
    exp_a = {p: (n, n_item[p[0]], n_item[p[1]], N, n / N, n * N / (n_item[p[0]] * n_item[p[1]]))
             for p, n in n_pair.items()}
    got_a = {(r.item_a, r.item_b): (r.n_ab, r.n_a, r.n_b, r.baskets, r.support, r.lift) for r in ass}
    assert got_a.keys() == exp_a.keys() and len(exp_a) == 2
    for k, v in exp_a.items():
        assert got_a[k][:4] == v[:4] and got_a[k][4:] == pytest.approx(v[4:]), k

    # subject: per grid cell
    pdf["closed"] = pdf["event_id"].isin(["e1", "e3", "e4"])
    exp_s = {}
    for g, grp in pdf.groupby("grid_code"):
        vc = sorted(Counter(grp["category_l1"].dropna()).items(), key=lambda kv: (-kv[1], kv[0]))
        weeks = {d.date() - timedelta(days=d.weekday()) for d in grp["reported_at"]}
        exp_s[g] = (len(grp), len(vc), vc[0][0], vc[0][1], grp["reported_at"].min().date(),
                    grp["reported_at"].max().date(), len(weeks), int(grp["closed"].sum()), grp["closed"].mean())
    assert {r.subject_key: (r.n, r.distinct_items, r.top_item, r.top_item_n, r.first_date, r.last_date,
                            r.active_weeks, r.flag_n, r.flag_rate) for r in sub} == exp_s


def test_run_services_from_theme_configuration(spark):
    theme = parse_theme({"theme": "demo", "services": [
        {"name": "by_district", "service": "category", "table": "unified.event",
         "where": "grid_code = 'g1'", "params": {"category_col": "category_l1", "group_cols": ["district_code"]}},
        {"name": "cells", "service": "subject", "table": "unified.event",
         "columns": {"wk": "date_trunc('week', reported_at)"},
         "params": {"subject_cols": ["grid_code", "wk"], "item_col": "category_l1"}},
    ]}, "<test>", known_services=services.SERVICES)
    out = services.run_services(theme, {"unified.event": _events(spark)})
    assert sorted(out) == ["analysis.demo_category_by_district", "analysis.demo_subject_cells"]
    got = {(r.category, r.n) for r in out["analysis.demo_category_by_district"].collect()}
    assert got == {("城乡建设", 3), ("环境保护", 2)}  # g1 only: e1, e4, e10 / e2, e5
    with pytest.raises(ValueError):
        services.run_service("forecast", _events(spark), {})
    with pytest.raises(KeyError):
        services.run_services(theme, {})
