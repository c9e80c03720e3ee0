"""Generic analysis services reused by every theme (population, grid management, and themes added later).

Five services, each a pure Spark transform (``DataFrame -> DataFrame``, no I/O, native expressions only):

============  =====================  =====================================================================
service       function               output grain
============  =====================  =====================================================================
trend         :func:`weekly_trend`    one row per (group…, week_start); count, change, anomaly flag
category      :func:`category_shares` one row per (group…, category); count, share, rank
time          :func:`time_profile`    one row per (group…, profile, bucket); hour / weekday / month
association   :func:`association`     one row per item pair co-occurring in a basket; support, lift
subject       :func:`subject_profile` one row per subject (a place, a person …); activity profile
============  =====================  =====================================================================

Themes pick services and inputs in ``schemas/themes/<theme>.yaml``; :func:`run_services` runs such a
configuration on a dict of input frames, so a new theme (综合治理, 民生 …) is configuration only.
Output contracts: ``tables/analysis.service_<service>.yaml`` (same columns for every theme,
``group_key`` holding the theme's grouping values joined by ``'|'``).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

if TYPE_CHECKING:
    from govlake.marts.theme_config import ThemeConfig

#: Separator of grouping values in ``group_key`` (not used inside GB/T 2260 codes or category names).
GROUP_SEP = "|"
#: ``group_key`` of an ungrouped (whole-table) result.
ALL_GROUP = "全部"
#: Text standing for a NULL grouping value inside ``group_key`` / ``subject_key``.
NULL_LABEL = "(空)"
SERVICES = ("trend", "category", "time", "association", "subject")


def _group_key(group_cols: Iterable[str]) -> Column:
    cols = list(group_cols)
    if not cols:
        return F.lit(ALL_GROUP)
    return F.concat_ws(GROUP_SEP, *[F.coalesce(F.col(c).cast("string"), F.lit(NULL_LABEL)) for c in cols])


def weekly_trend(df: DataFrame, date_col: str, group_cols: Iterable[str] = (), baseline_weeks: int = 8,
                 min_baseline: int = 4, z_threshold: float = 3.0) -> DataFrame:
    """Weekly count series per group with week-on-week change and an anomaly flag (trend service).

    * ``week_start`` = Monday of the ISO 8601 week of ``date_col`` (DATE or TIMESTAMP; a timestamp is
      read in the session time zone, Asia/Shanghai). Rows with NULL ``date_col`` are not counted.
    * The series is complete: every week from the first to the last week present in ``df`` (over all
      groups) appears for every group, with ``n`` = 0 when the group had no row that week.
    * ``change`` = n − n of the previous week (NULL on the first week); ``change_pct`` = change /
      previous (NULL when the previous week is 0 or missing).
    * Anomaly rule (Shewhart 3-sigma control chart, Western Electric rule 1, with a floor on sigma):
      baseline = the up-to-``baseline_weeks`` weeks before the week; ``z`` = (n − mean) /
      max(sample standard deviation, 1); ``is_anomaly`` when the baseline has ≥ ``min_baseline`` weeks
      and |z| ≥ ``z_threshold``. The floor of 1 keeps a flat series (sd 0) from flagging a change of 1.

    Args:
        df: any frame holding ``date_col`` and ``group_cols``.
        date_col: DATE/TIMESTAMP column.
        group_cols: columns to group by (none = one whole-table series).
        baseline_weeks, min_baseline: baseline window (weeks) and its minimum length (≥ 1).
        z_threshold: |z| at or above which a week is flagged.

    Returns:
        DataFrame ``group_key`` STRING (group values joined by ``'|'``, NULL shown as ``'(空)'``, ``'全部'`` when
        ungrouped), ``week_start`` DATE, ``n`` LONG (rows), ``change`` LONG, ``change_pct`` DOUBLE (fraction),
        ``baseline_mean`` DOUBLE, ``baseline_sd`` DOUBLE, ``baseline_weeks`` INT, ``z`` DOUBLE,
        ``is_anomaly`` BOOLEAN; key (group_key, week_start).

    Raises:
        ValueError: ``baseline_weeks`` or ``min_baseline`` < 1.
    """
    if baseline_weeks < 1 or min_baseline < 1:
        raise ValueError("baseline_weeks and min_baseline must be >= 1")
    dated = df.where(F.col(date_col).isNotNull()).select(
        _group_key(group_cols).alias("group_key"), F.trunc(F.to_date(F.col(date_col)), "week").alias("week_start"))
    counts = dated.groupBy("group_key", "week_start").agg(F.count(F.lit(1)).cast("long").alias("n"))
    span = dated.agg(F.min("week_start").alias("lo"), F.max("week_start").alias("hi"))
    weeks = span.where(F.col("lo").isNotNull()).select(
        F.explode(F.sequence("lo", "hi", F.expr("INTERVAL 7 DAYS"))).alias("week_start"))
    spine = dated.select("group_key").distinct().crossJoin(weeks)
    series = spine.join(counts, ["group_key", "week_start"], "left").withColumn(
        "n", F.coalesce("n", F.lit(0).cast("long")))
    w = Window.partitionBy("group_key").orderBy("week_start")
    base = w.rowsBetween(-baseline_weeks, -1)
    prev = F.lag("n").over(w)
    out = series.select(
        "group_key", "week_start", "n",
        (F.col("n") - prev).cast("long").alias("change"),
        F.when(prev > 0, (F.col("n") - prev) / prev).alias("change_pct"),
        F.avg("n").over(base).alias("baseline_mean"),
        F.stddev_samp("n").over(base).alias("baseline_sd"),
        F.count("n").over(base).cast("int").alias("baseline_weeks"),
    )
    z = F.when(F.col("baseline_weeks") >= 1,
               (F.col("n") - F.col("baseline_mean")) / F.greatest(F.coalesce("baseline_sd", F.lit(0.0)), F.lit(1.0)))
    return out.withColumn("z", z).withColumn(
        "is_anomaly", F.coalesce((F.col("baseline_weeks") >= min_baseline) & (F.abs("z") >= z_threshold), F.lit(False)))


def category_shares(df: DataFrame, category_col: str, group_cols: Iterable[str] = (),
                    missing_label: str = "未分类") -> DataFrame:
    """Count, share and rank of each category within each group (category service).

    NULL/blank categories are counted under ``missing_label``. ``share`` = rows of the category / rows of
    the group; ``rank`` = row_number over the group by n DESC then category ASC (code-point order), so
    ties get distinct deterministic ranks.

    Returns:
        DataFrame ``group_key`` STRING, ``category`` STRING, ``n`` LONG, ``share`` DOUBLE (0–1),
        ``rank`` INT; key (group_key, category).
    """
    cat = F.when(F.col(category_col).isNull() | (F.trim(F.col(category_col).cast("string")) == ""),
                 F.lit(missing_label)).otherwise(F.trim(F.col(category_col).cast("string")))
    counts = df.select(_group_key(group_cols).alias("group_key"), cat.alias("category")).groupBy(
        "group_key", "category").agg(F.count(F.lit(1)).cast("long").alias("n"))
    g = Window.partitionBy("group_key")
    return counts.select(
        "group_key", "category", "n",
        (F.col("n") / F.sum("n").over(g)).alias("share"),
        F.row_number().over(g.orderBy(F.col("n").desc(), F.col("category"))).cast("int").alias("rank"),
    )


#: Buckets of each time profile: hour of day 0–23, ISO weekday 1 (Monday)–7 (Sunday), month 1–12.
PROFILE_BUCKETS = {"hour": range(0, 24), "weekday": range(1, 8), "month": range(1, 13)}


def time_profile(df: DataFrame, ts_col: str, group_cols: Iterable[str] = (),
                 profiles: Iterable[str] = ("hour", "weekday", "month")) -> DataFrame:
    """Hour-of-day, weekday and month profiles per group (time service).

    Buckets are read in the session time zone (Asia/Shanghai): ``hour`` 0–23, ``weekday`` ISO 8601
    1 = Monday … 7 = Sunday, ``month`` 1–12. Every bucket of every requested profile is present for
    every group (``n`` = 0 when empty). ``share`` = n / rows of the group with a non-NULL ``ts_col``.
    Use ``profiles=("weekday", "month")`` for a DATE column (its hour is always 0).

    Returns:
        DataFrame ``group_key`` STRING, ``profile`` STRING, ``bucket`` INT, ``n`` LONG,
        ``share`` DOUBLE (0–1; NULL for a group without rows); key (group_key, profile, bucket).

    Raises:
        ValueError: an unknown profile name.
    """
    profiles = list(profiles)
    bad = [p for p in profiles if p not in PROFILE_BUCKETS]
    if bad:
        raise ValueError(f"unknown profiles {bad}; known: {list(PROFILE_BUCKETS)}")
    ts = F.col(ts_col)
    expr = {"hour": F.hour(ts), "weekday": ((F.dayofweek(ts) + 5) % 7) + 1, "month": F.month(ts)}
    rows = df.where(ts.isNotNull()).select(
        _group_key(group_cols).alias("group_key"),
        F.explode(F.array(*[F.struct(F.lit(p).alias("profile"), expr[p].cast("int").alias("bucket"))
                            for p in profiles])).alias("b"))
    counts = rows.groupBy("group_key", F.col("b.profile").alias("profile"), F.col("b.bucket").alias("bucket")).agg(
        F.count(F.lit(1)).cast("long").alias("n"))
    buckets = df.sparkSession.createDataFrame([(p, b) for p in profiles for b in PROFILE_BUCKETS[p]],
                                              "profile string, bucket int")
    spine = rows.select("group_key").distinct().crossJoin(buckets)
    full = spine.join(counts, ["group_key", "profile", "bucket"], "left").withColumn(
        "n", F.coalesce("n", F.lit(0).cast("long")))
    g = Window.partitionBy("group_key", "profile")
    return full.select("group_key", "profile", "bucket", "n",
                       F.when(F.sum("n").over(g) > 0, F.col("n") / F.sum("n").over(g)).alias("share"))


def association(df: DataFrame, basket_cols: Iterable[str], item_col: str, min_pair_baskets: int = 1) -> DataFrame:
    """Pairs of items occurring in the same basket, with support, confidence and lift (association service).

    A basket is one value of ``basket_cols`` (e.g. grid cell × ISO week); an item is a distinct non-NULL
    ``item_col`` value in it (an item counts once per basket however many rows). Over the N baskets
    that hold at least one item (Agrawal, Imieliński & Swami 1993, association rules):

    * ``support`` = baskets with both A and B / N;
    * ``confidence_a_b`` = baskets with both / baskets with A; ``confidence_b_a`` likewise;
    * ``lift`` = support(A,B) / (support(A) × support(B)) = n_ab × N / (n_a × n_b); > 1 means A and
      B co-occur more often than if independent.

    Pairs are unordered with ``item_a`` < ``item_b`` (code-point order); pairs in fewer than
    ``min_pair_baskets`` baskets are dropped.

    Returns:
        DataFrame ``item_a`` STRING, ``item_b`` STRING, ``n_ab`` LONG, ``n_a`` LONG, ``n_b`` LONG,
        ``baskets`` LONG (N), ``support`` DOUBLE, ``confidence_a_b`` DOUBLE, ``confidence_b_a`` DOUBLE,
        ``lift`` DOUBLE; key (item_a, item_b).
    """
    basket = F.concat_ws(GROUP_SEP, *[F.coalesce(F.col(c).cast("string"), F.lit("")) for c in basket_cols])
    items = df.where(F.col(item_col).isNotNull()).select(
        basket.alias("basket"), F.col(item_col).cast("string").alias("item")).distinct()
    n_baskets = items.agg(F.countDistinct("basket").cast("long").alias("baskets"))
    per_item = items.groupBy("item").agg(F.count(F.lit(1)).cast("long").alias("n"))
    a, b = items.alias("a"), items.alias("b")
    pairs = (a.join(b, (F.col("a.basket") == F.col("b.basket")) & (F.col("a.item") < F.col("b.item")))
             .groupBy(F.col("a.item").alias("item_a"), F.col("b.item").alias("item_b"))
             .agg(F.count(F.lit(1)).cast("long").alias("n_ab"))
             .where(F.col("n_ab") >= min_pair_baskets))
    na, nb = per_item.select(F.col("item").alias("item_a"), F.col("n").alias("n_a")), \
        per_item.select(F.col("item").alias("item_b"), F.col("n").alias("n_b"))
    out = pairs.join(na, "item_a").join(nb, "item_b").crossJoin(n_baskets)
    return out.select(
        "item_a", "item_b", "n_ab", "n_a", "n_b", "baskets",
        (F.col("n_ab") / F.col("baskets")).alias("support"),
        (F.col("n_ab") / F.col("n_a")).alias("confidence_a_b"),
        (F.col("n_ab") / F.col("n_b")).alias("confidence_b_a"),
        (F.col("n_ab") * F.col("baskets") / (F.col("n_a") * F.col("n_b"))).alias("lift"),
    )


def subject_profile(df: DataFrame, subject_cols: Iterable[str], item_col: str, date_col: str | None = None,
                    flag_col: str | None = None) -> DataFrame:
    """Profile of each subject (a place, a grid cell, a person, a worker …) (subject service).

    * ``n`` rows of the subject; ``distinct_items`` distinct non-NULL ``item_col`` values;
      ``top_item`` the most frequent item (ties: smallest code point), ``top_item_n`` its count,
      ``top_item_share`` = top_item_n / n;
    * ``first_date`` / ``last_date`` min / max of ``date_col`` as DATE; ``active_weeks`` distinct ISO
      weeks with a row (NULL without ``date_col``);
    * ``flag_n`` rows where the BOOLEAN ``flag_col`` is TRUE, ``flag_rate`` = flag_n / n (NULL
      without ``flag_col``) — e.g. closed events (结案) or persons aged 65+.

    Returns:
        DataFrame ``subject_key`` STRING (subject values joined by ``'|'``), ``n`` LONG,
        ``distinct_items`` LONG, ``top_item`` STRING, ``top_item_n`` LONG, ``top_item_share`` DOUBLE,
        ``first_date`` DATE, ``last_date`` DATE, ``active_weeks`` LONG, ``flag_n`` LONG,
        ``flag_rate`` DOUBLE; key (subject_key).
    """
    key = _group_key(subject_cols).alias("subject_key")
    day = F.to_date(F.col(date_col)) if date_col else F.lit(None).cast("date")
    flag = F.col(flag_col).cast("boolean") if flag_col else F.lit(None).cast("boolean")
    base = df.select(key, F.col(item_col).cast("string").alias("item"), day.alias("d"), flag.alias("f"))
    items = base.where(F.col("item").isNotNull()).groupBy("subject_key", "item").agg(
        F.count(F.lit(1)).cast("long").alias("c"))
    top = items.select("subject_key", F.col("item").alias("top_item"), F.col("c").alias("top_item_n"),
                       F.row_number().over(Window.partitionBy("subject_key").orderBy(F.col("c").desc(), "item"))
                       .alias("r")).where("r = 1").drop("r")
    agg = base.groupBy("subject_key").agg(
        F.count(F.lit(1)).cast("long").alias("n"),
        F.countDistinct("item").cast("long").alias("distinct_items"),
        F.min("d").alias("first_date"), F.max("d").alias("last_date"),
        F.countDistinct(F.trunc("d", "week")).cast("long").alias("_weeks"),
        F.sum(F.when(F.col("f"), 1).otherwise(0)).cast("long").alias("_flag_n"),
    )
    out = agg.join(top, "subject_key", "left")
    return out.select(
        "subject_key", "n", "distinct_items", "top_item", "top_item_n",
        (F.col("top_item_n") / F.col("n")).alias("top_item_share"),
        "first_date", "last_date",
        (F.col("_weeks") if date_col else F.lit(None)).cast("long").alias("active_weeks"),
        (F.col("_flag_n") if flag_col else F.lit(None)).cast("long").alias("flag_n"),
        (F.col("_flag_n") / F.col("n") if flag_col else F.lit(None)).cast("double").alias("flag_rate"),
    )


_FUNCTIONS: dict[str, Callable[..., DataFrame]] = {
    "trend": weekly_trend, "category": category_shares, "time": time_profile,
    "association": association, "subject": subject_profile}


def run_service(service: str, df: DataFrame, params: Mapping[str, Any]) -> DataFrame:
    """Run one service by name on ``df`` with keyword ``params`` (lists become tuples).

    Raises:
        ValueError: unknown service name.
        TypeError: a parameter the service does not take.
    """
    if service not in _FUNCTIONS:
        raise ValueError(f"unknown service {service!r}; services are {', '.join(SERVICES)}")
    return _FUNCTIONS[service](df, **{k: tuple(v) if isinstance(v, list) else v for k, v in params.items()})


def run_services(theme: ThemeConfig, inputs: Mapping[str, DataFrame]) -> dict[str, DataFrame]:
    """Run every service of a parsed theme configuration (:func:`govlake.marts.theme_config.load_theme`) on
    ``inputs``.

    Each :class:`~govlake.marts.theme_config.ServiceSpec` has ``name`` (output table suffix), ``service`` (one of
    :data:`SERVICES`), ``table`` (a key of ``inputs``, e.g. ``unified.event``), optional ``where``
    (a Spark SQL boolean expression), optional ``columns`` (name → Spark SQL expression, added before
    the service, e.g. ``week_start: "date_trunc('week', report_date)"``) and ``params`` (keyword
    arguments of the service function). Output tables are named
    ``analysis.<theme>_<service>_<name>`` (e.g. ``analysis.grid_trend_by_district``).

    Returns:
        output table name → DataFrame (the service's output schema, see each function).

    Raises:
        KeyError: a service names a table missing from ``inputs``.
        ValueError: unknown service.
    """
    out = {}
    for spec in theme.services:
        df = inputs[spec.table]
        for col, expr in spec.columns:
            df = df.withColumn(col, F.expr(expr))
        if spec.where:
            df = df.where(F.expr(spec.where))
        out[f"analysis.{theme.name}_{spec.service}_{spec.name}"] = run_service(spec.service, df, spec.params)
    return out
