"""Unified layer: one person, one event per real thing, in national codes.

Tables (Delta, MERGEd on their business key; a rerun with the same input changes nothing):

``unified.person`` — one row per citizen, key ``person_id``:
    person_id STRING (the normalised 18-digit GB 11643 ID number), id_no STRING, name STRING,
    sex_code STRING (GB/T 2261.1), birth_date DATE, ethnic_code STRING (GB/T 3304),
    household_no STRING, community_code STRING (12-digit statistical division code),
    district_code STRING (6-digit GB/T 2260), address STRING, phone STRING,
    sources ARRAY<STRING> (departments that recorded the person), first_seen_date DATE,
    last_seen_date DATE, is_current BOOLEAN, _content_hash STRING.

``unified.event`` — one row per grid event or citizen message, key ``event_id``:
    event_id STRING ('grid:<event_no>' | 'hotline:<message id>'), channel STRING,
    reported_at TIMESTAMP, report_date DATE (Asia/Shanghai), district_code STRING (NULL when the
    place is unknown), community_code STRING, grid_code STRING, category_l1/_l2/_l3 STRING,
    text STRING, status STRING, closed_at TIMESTAMP, lng DOUBLE, lat DOUBLE,
    first_seen_date DATE, _content_hash STRING.

Standardisation rules come from each object's ``unified`` block in ``schemas/sources/*.yaml``
(column roles, department code maps, date formats); the code pack is :mod:`jobs.codes`.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from jobs import codes

#: Variants of the middle dot used in transliterated names (GB 18030 / GA 1050-2013 practice: U+00B7).
NAME_DOT_VARIANTS = ".•・．‧∙⋅●·｡"
MIDDLE_DOT = "\u00b7"

PERSON_ATTRIBUTES = ("id_no", "name", "sex_code", "birth_date", "ethnic_code", "household_no",
                     "community_code", "district_code", "address", "phone")


def normalize_name_col(c):
    """Standardise a person name: NFKC-style full-width folding is not applied to Han characters;
    whitespace is removed and every middle-dot variant becomes U+00B7 '·' (names of ethnic
    minorities and foreigners, GA 1050-2013 practice). Returns STRING (NULL for blank)."""
    from pyspark.sql import functions as F

    cleaned = F.regexp_replace(F.regexp_replace(c, r"[\s\u3000]+", ""), f"[{NAME_DOT_VARIANTS}]", MIDDLE_DOT)
    return F.when(F.length(cleaned) > 0, cleaned)


def district_of_col(community_code):
    """6-digit district code (GB/T 2260) of a 12-digit community code, NULL when malformed."""
    from pyspark.sql import functions as F

    return F.when(community_code.rlike(r"^\d{12}$"), F.substring(community_code, 1, 6))


def person_candidates(df, source: str, rules: dict[str, Any]):
    """Standardise one department's person records (a staging frame) to candidate rows.

    Args:
        df: accepted rows of ``staging.<source>_<object>`` (delivered STRING columns + lineage).
        source: department source name (e.g. ``hukou``).
        rules: the object's ``unified`` block: ``priority`` (int, 1 = most authoritative),
            ``columns`` (role -> delivered column; roles id_no, name, sex, birth_date, ethnic,
            household_no, community_code, address, phone), ``sex_map``, ``date_formats``.

    Returns:
        DataFrame: record_key STRING, source STRING, priority INT, updated_at TIMESTAMP,
        id_valid BOOLEAN, and the ``PERSON_ATTRIBUTES`` standardised (birth_date DATE, the rest
        STRING; a role the department lacks is NULL).
    """
    from pyspark.sql import functions as F

    cols = rules["columns"]

    def role(name):
        return F.col(cols[name]) if name in cols else F.lit(None).cast("string")

    community = F.trim(role("community_code"))
    # The normalised ID is projected once and validated in a second projection: inlined, the
    # GB 11643 expression tree grows past Spark's 64 KB code-generation limit.
    standardised = df.select(
        F.concat_ws(":", F.lit(source), F.col("_source_table"), F.col("_row_number").cast("string")).alias("record_key"),
        F.lit(source).alias("source"),
        F.lit(int(rules.get("priority", 9))).alias("priority"),
        F.to_timestamp(F.col("updated_at")).alias("updated_at"),
        codes.id_normalize_col(role("id_no")).alias("id_no"),
        normalize_name_col(role("name")).alias("name"),
        codes.standardize_sex_col(role("sex"), rules.get("sex_map", {})).alias("sex_code"),
        codes.parse_date_col(role("birth_date"), rules.get("date_formats", codes.DATE_FORMATS)).alias("birth_date"),
        (codes.standardize_ethnic_col(role("ethnic")) if "ethnic" in cols else F.lit(None).cast("string")).alias("ethnic_code"),
        F.trim(role("household_no")).alias("household_no"),
        community.alias("community_code"),
        district_of_col(community).alias("district_code"),
        F.trim(role("address")).alias("address"),
        F.regexp_replace(role("phone"), r"[\s-]", "").alias("phone"),
    )
    return standardised.select("record_key", "source", "priority", "updated_at",
                               codes.id_is_valid_col(F.col("id_no")).alias("id_valid"), *PERSON_ATTRIBUTES)


def resolve_persons(candidates, logical_date: dt.date):
    """Resolve candidate records to one golden row per person (deterministic linkage on the ID).

    Records with a valid normalised GB 11643 ID number are grouped by it; each attribute takes
    the first non-NULL value by survivorship order: department ``priority`` ascending (the
    household registry first), then the latest ``updated_at``, then ``record_key`` (a total,
    deterministic tie-break). Records without a valid ID are not linked here (the quality gate
    quarantines them; probabilistic linkage is a later stage).

    Returns:
        the ``unified.person`` columns (see module doc) for ``logical_date``.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    valid = candidates.where("id_valid")
    order = Window.partitionBy("id_no").orderBy(F.col("priority"), F.col("updated_at").desc_nulls_last(),
                                                   F.col("record_key"))
    full = order.rowsBetween(Window.unboundedPreceding, Window.unboundedFollowing)
    survived = valid.select(
        F.col("id_no").alias("person_id"),
        *[F.first(a, ignorenulls=True).over(full).alias(a) for a in PERSON_ATTRIBUTES],
        F.array_sort(F.collect_set("source").over(full)).alias("sources"),
        F.row_number().over(order).alias("_rank"),
    ).where("_rank = 1").drop("_rank")
    out = survived.select(
        "person_id", *PERSON_ATTRIBUTES, "sources",
        F.lit(logical_date).cast("date").alias("first_seen_date"),
        F.lit(logical_date).cast("date").alias("last_seen_date"),
        F.lit(True).alias("is_current"),
    )
    return with_content_hash(out, exclude=("first_seen_date",))


def with_content_hash(df, exclude: tuple[str, ...] = ()):
    """Add ``_content_hash`` (SHA-256 of all columns but ``exclude``, NULL-aware) for MERGE."""
    from pyspark.sql import functions as F

    parts = [F.coalesce(F.col(c).cast("string"), F.lit("\u2400")) for c in df.columns if c not in exclude]
    return df.withColumn("_content_hash", F.sha2(F.concat_ws("\u241f", *parts), 256))


_ISO_DATE = r'"\$date"\s*:\s*"([^"]+)"'


def _bson_date_col(c):
    """Instant of a relaxed Extended JSON date (``{"$date": "2025-06-01T02:03:04Z"}``) or ISO text."""
    from pyspark.sql import functions as F

    text = F.when(c.startswith("{"), F.regexp_extract(c, _ISO_DATE, 1)).otherwise(c)
    return F.to_timestamp(F.when(F.length(text) > 0, text))


def grid_events(df):
    """Standardise grid-management events (``staging.wangge_events``) to ``unified.event`` rows.

    Handles the drift seen in the documents: ``category`` as an object ``{l1, l2, l3}`` or a
    string ``"l1/l2/l3"``; ``grid_code`` as string or integer (kept as its digits).

    Returns:
        the ``unified.event`` columns except ``first_seen_date`` and ``_content_hash``.
    """
    from pyspark.sql import functions as F

    cat = F.col("category")
    is_obj = cat.startswith("{")
    parts = F.split(cat, "/")
    reported = _bson_date_col(F.col("reported_at"))
    community = F.trim(F.col("community_code"))
    return df.select(
        F.concat(F.lit("grid:"), F.col("event_no")).alias("event_id"),
        F.lit("grid").alias("channel"),
        reported.alias("reported_at"),
        F.to_date(reported).alias("report_date"),
        district_of_col(community).alias("district_code"),
        community.alias("community_code"),
        F.regexp_replace(F.col("grid_code"), r'^"|"$', "").alias("grid_code"),
        F.when(is_obj, F.get_json_object(cat, "$.l1")).otherwise(F.element_at(parts, 1)).alias("category_l1"),
        F.when(is_obj, F.get_json_object(cat, "$.l2")).otherwise(F.element_at(parts, 2)).alias("category_l2"),
        F.when(is_obj, F.get_json_object(cat, "$.l3")).otherwise(F.element_at(parts, 3)).alias("category_l3"),
        F.col("description").alias("text"),
        F.col("status"),
        _bson_date_col(F.col("closed_at")).alias("closed_at"),
        F.col("lng").cast("double").alias("lng"),
        F.col("lat").cast("double").alias("lat"),
    )


#: Formats of the message board's time column, Spark datetime patterns: ``2019/2/28 11:25:05``
#: (most messages) and ``2019-08-22 00:00:00`` (about 3% of them).
MESSAGE_TIME_FORMATS = ("yyyy/M/d H:mm:ss", "yyyy-MM-dd HH:mm:ss")


def hotline_events(df, labels=None):
    """Standardise citizen messages (``staging.zhengwu_messages``) to ``unified.event`` rows.

    Places in the messages are masked by the source (A市, A1区…), so ``district_code`` is NULL
    (unknown place, counted as such in the marts). The first-level category comes from the
    labelled sample (``labels``: message_id STRING, category_l1 STRING) when the message is in it.

    Returns:
        the ``unified.event`` columns except ``first_seen_date`` and ``_content_hash``.
    """
    from pyspark.sql import functions as F

    reported = F.coalesce(*[F.to_timestamp(F.col("message_time"), f) for f in MESSAGE_TIME_FORMATS])
    base = df
    if labels is not None:
        base = df.join(F.broadcast(labels), on="message_id", how="left")
    else:
        base = df.withColumn("category_l1", F.lit(None).cast("string"))
    null = F.lit(None)
    return base.select(
        F.concat(F.lit("hotline:"), F.col("message_id")).alias("event_id"),
        F.lit("hotline").alias("channel"),
        reported.alias("reported_at"),
        F.to_date(reported).alias("report_date"),
        null.cast("string").alias("district_code"),
        null.cast("string").alias("community_code"),
        null.cast("string").alias("grid_code"),
        F.col("category_l1"),
        null.cast("string").alias("category_l2"),
        null.cast("string").alias("category_l3"),
        F.concat_ws("\n", F.col("subject"), F.col("detail")).alias("text"),
        null.cast("string").alias("status"),
        null.cast("timestamp").alias("closed_at"),
        null.cast("double").alias("lng"),
        null.cast("double").alias("lat"),
    )


def finalize_events(events, logical_date: dt.date):
    """Dedupe events on ``event_id`` (deterministic: latest ``reported_at``, then text) and add
    ``first_seen_date`` and ``_content_hash``; ready for MERGE into ``unified.event``."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    order = Window.partitionBy("event_id").orderBy(F.col("reported_at").desc_nulls_last(), F.col("text"))
    deduped = events.withColumn("_rank", F.row_number().over(order)).where("_rank = 1").drop("_rank")
    out = deduped.withColumn("first_seen_date", F.lit(logical_date).cast("date"))
    return with_content_hash(out, exclude=("first_seen_date",))
