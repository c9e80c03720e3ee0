"""Probabilistic person linkage for records without a valid GB 11643 ID, and its accuracy report.

Records with a valid ID are linked deterministically on it (:func:`govlake.unified.persons.id_links`). The rest (the
"residue": missing, malformed or check-digit-failing IDs) are linked here with a Fellegi–Sunter model
(Fellegi & Sunter, *A Theory for Record Linkage*, JASA 1969) run by Splink on its DuckDB backend:

1. in Spark, :func:`blocking_reference` keeps only the ID'd records that share a blocking value with a residue
   record: the COMPOUND blocking rules of ``linkage.yaml`` (ID body; phone; name + birth date; birth date +
   community; name + community; name pinyin + community; birth date + sex + district; name + the ID's birth
   digits), a value shared by more than ``max_block_size`` ID'd records skipped (logged) — so what is
   collected to the driver is proportional to the residue, not to the population;
2. :func:`predict_pairs` scores candidate pairs with the FIXED m/u parameters of
   ``schemas/unified/linkage.yaml`` (no training, so no randomness) and says which fields agreed;
3. :func:`assign_person_ids` gives each residue record the person of its best ID'd match at or above the
   threshold, else clusters residue records among themselves (connected components) under a stable
   synthetic ``person_id`` ('U' + 17 hex digits of SHA-256 of the cluster's smallest record_key, or the id
   the cluster already had in ``unified.person_link``).

Why DuckDB and not Splink's Spark backend: Splink's Spark backend registers Scala similarity UDFs built for
Scala 2.12 / Spark 3 (upstream issue "Scala 2.13 support?", open) and Splink marks Spark 4 as partially
supported; our stack is pyspark 4.1.4 (Scala 2.13). The residue is small (rows without a valid ID are a few
per cent of a department's rows at most), so collecting it plus its blocked reference rows is cheap — as long
as every blocking rule is selective: a birth date alone or a name alone (the former rules) blocks together
hundreds of records at 1M residents, and the driver collected nearly every ID'd record (OOM, issue #6).

Accuracy report (one command)::

    python -m govlake.unified.linkage report --date 2025-06-30

writes ``<reports>/linkage/<date>.json`` and ``.md``: pairwise precision and recall per department of
``unified.person_link`` against the sample generator's ``truth/links.csv`` (see :func:`linkage_accuracy`).
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache, reduce
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from govlake.core import fsio
from govlake.core.config import SAMPLE_LOGICAL_DATE, SCHEMAS_DIR, Settings

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import Column, DataFrame, SparkSession

MODEL_FILE = SCHEMAS_DIR / "unified" / "linkage.yaml"
#: Columns of a record the model compares (as collected to pandas).
LINK_FIELDS = ("record_key", "id_no", "name", "sex_code", "birth_date", "community_code", "address", "phone")
LINK_SCHEMA = "record_key string, person_id string, link_method string, match_weight double, agreed_fields string"
#: Blocking keys a rule of ``linkage.yaml`` may name, besides the :data:`LINK_FIELDS` themselves (how each is
#: derived: :func:`_key_col` in Spark, :func:`prepare_records` in pandas — the two must agree).
DERIVED_KEYS = ("id_body", "id_birth", "district", "name_pinyin")
#: Default of ``max_block_size`` (ID'd records sharing one blocking value) when ``linkage.yaml`` has none.
MAX_BLOCK_SIZE = 100

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ComparisonLevel:
    """A level of a comparison: its Splink SQL condition and fixed m / u (None for the null level).

    Attributes:
        label: the level's name (``agreed_fields`` says ``<comparison>:<label>``).
        sql: Splink (DuckDB) SQL over ``<column>_l`` / ``<column>_r``, or ``ELSE``.
        is_null: the null level (weighs 0; no m / u).
        m, u: P(level | same person), P(level | different persons), in (0, 1]; None for the null level.
    """

    label: str
    sql: str
    is_null: bool = False
    m: float | None = None
    u: float | None = None


@dataclass(frozen=True)
class Comparison:
    """One compared field (``comparisons[i]``): its output name and levels, most specific first."""

    name: str
    levels: tuple[ComparisonLevel, ...]


@dataclass(frozen=True)
class BlockingRule:
    """A blocking rule: pairs equal on every key (:data:`LINK_FIELDS` or :data:`DERIVED_KEYS`) are scored."""

    keys: tuple[str, ...]


@dataclass(frozen=True)
class LinkageModel:
    """The linkage model of ``schemas/unified/linkage.yaml`` (:func:`load_model`).

    Attributes:
        probability_two_random_records_match: the prior, in (0, 1].
        match_weight_threshold: link when a pair's match weight is at least this.
        blocking_rules: the rules generating candidate pairs (:func:`blocking_reference`, :func:`splink_settings`).
        comparisons: the compared fields with their fixed m / u per level.
        max_block_size: a blocking value shared by more ID'd records is skipped for its rule.
        version: the file's version.
    """

    probability_two_random_records_match: float
    match_weight_threshold: float
    blocking_rules: tuple[BlockingRule, ...]
    comparisons: tuple[Comparison, ...]
    max_block_size: int = MAX_BLOCK_SIZE
    version: int = 1


def load_model(path: Path | str = MODEL_FILE) -> LinkageModel:
    """The linkage model of ``path`` (read and checked once per path): prior, threshold, blocking rules (each
    ``{keys: [...]}``, pairs equal on every key), ``max_block_size``, comparisons with fixed m/u per level.

    Raises:
        ValueError: the file is malformed; names the file and the field (an unknown field, a non-null level
            without ``m`` or ``u`` or with a probability outside (0, 1], a blocking rule naming no key or a key
            that is neither a :data:`LINK_FIELDS` column nor a :data:`DERIVED_KEYS` one, ...).
    """
    return _load_model(str(path))


@lru_cache(maxsize=4)
def _load_model(path: str) -> LinkageModel:
    with open(path, encoding="utf-8") as fh:
        raw = yaml.safe_load(fh)
    try:
        return _parse_model(raw)
    except ValueError as exc:
        raise ValueError(f"linkage model file {path}: {exc}") from exc


def _number(where: str, value: Any) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ValueError(f"{where} must be a number, not {value!r}")
    return float(value)


def _probability(where: str, value: Any) -> float:
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value <= 1):
        raise ValueError(f"{where} must be in (0, 1], not {value!r}")
    return float(value)


def _fields(where: str, raw: Any, required: tuple[str, ...], optional: tuple[str, ...]) -> dict[str, Any]:
    """``raw`` as a map with every ``required`` field and no field outside ``required`` + ``optional``."""
    if not isinstance(raw, dict):
        raise ValueError(f"{where} must be a map, not {raw!r}")
    unknown = sorted(set(raw) - set(required) - set(optional))
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {', '.join(map(str, unknown))}")
    missing = [f for f in required if f not in raw]
    if missing:
        raise ValueError(f"{where}: missing field(s) {', '.join(missing)}")
    return raw


def _parse_model(raw: Any) -> LinkageModel:
    top = _fields("the model", raw, ("probability_two_random_records_match", "match_weight_threshold",
                                     "blocking_rules", "comparisons"), ("version", "max_block_size"))
    version = top.get("version", 1)
    if not isinstance(version, int) or isinstance(version, bool):
        raise ValueError(f"version must be an integer, not {version!r}")
    block = top.get("max_block_size", MAX_BLOCK_SIZE)
    if not isinstance(block, int) or isinstance(block, bool) or block < 1:
        raise ValueError(f"max_block_size must be a positive integer, not {block!r}")
    known = set(LINK_FIELDS) | set(DERIVED_KEYS)
    if not isinstance(top["blocking_rules"], list) or not top["blocking_rules"]:
        raise ValueError(f"blocking_rules must be a non-empty list, not {top['blocking_rules']!r}")
    rules = []
    for i, rule in enumerate(top["blocking_rules"]):
        keys = _fields(f"blocking_rules[{i}]", rule, ("keys",), ())["keys"]
        if not isinstance(keys, list) or not keys or not all(isinstance(k, str) for k in keys) or set(keys) - known:
            raise ValueError(f"blocking_rules[{i}].keys must be a non-empty list of {sorted(known)}, not {keys!r}")
        rules.append(BlockingRule(keys=tuple(keys)))
    if not isinstance(top["comparisons"], list) or not top["comparisons"]:
        raise ValueError(f"comparisons must be a non-empty list, not {top['comparisons']!r}")
    comparisons = []
    for i, comp in enumerate(top["comparisons"]):
        comp = _fields(f"comparisons[{i}]", comp, ("name", "levels"), ())
        name = comp["name"]
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"comparisons[{i}].name must be a column name, not {name!r}")
        if not isinstance(comp["levels"], list) or not comp["levels"]:
            raise ValueError(f"comparisons.{name}.levels must be a non-empty list, not {comp['levels']!r}")
        levels = []
        for j, lv in enumerate(comp["levels"]):
            lv = _fields(f"comparisons.{name}.levels[{j}]", lv, ("label", "sql"), ("is_null", "m", "u"))
            at = f"comparisons.{name}.{lv['label']}"
            if not isinstance(lv["label"], str) or not isinstance(lv["sql"], str) or not lv["sql"]:
                raise ValueError(f"{at}: label and sql must be text, not {lv['label']!r}, {lv['sql']!r}")
            is_null = lv.get("is_null", False)
            if not isinstance(is_null, bool):
                raise ValueError(f"{at}.is_null must be true or false, not {is_null!r}")
            if is_null:
                levels.append(ComparisonLevel(label=lv["label"], sql=lv["sql"], is_null=True))
                continue
            levels.append(ComparisonLevel(label=lv["label"], sql=lv["sql"], m=_probability(f"{at}.m", lv.get("m")),
                                          u=_probability(f"{at}.u", lv.get("u"))))
        comparisons.append(Comparison(name=name, levels=tuple(levels)))
    return LinkageModel(
        probability_two_random_records_match=_probability("probability_two_random_records_match",
                                                          top["probability_two_random_records_match"]),
        match_weight_threshold=_number("match_weight_threshold", top["match_weight_threshold"]),
        blocking_rules=tuple(rules), comparisons=tuple(comparisons), max_block_size=block, version=version)


def splink_settings(model: LinkageModel) -> dict[str, Any]:
    """Splink settings dict (dedupe over residue + reference) of ``model``: every level's m/u fixed; only
    pairs with at least one residue record are generated (``residue`` column, 1 for a residue record). A plain
    mapping because Splink takes one."""
    comparisons = []
    for comp in model.comparisons:
        levels = []
        for lv in comp.levels:
            level: dict[str, Any] = {"sql_condition": lv.sql, "label_for_charts": lv.label}
            if lv.is_null:
                level["is_null_level"] = True
            else:
                level.update(m_probability=lv.m, u_probability=lv.u, fix_m_probability=True, fix_u_probability=True)
            levels.append(level)
        comparisons.append({"output_column_name": comp.name, "comparison_levels": levels})
    return {
        "link_type": "dedupe_only",
        "unique_id_column_name": "record_key",
        "probability_two_random_records_match": model.probability_two_random_records_match,
        "blocking_rules_to_generate_predictions": [
            {"blocking_rule": f"({blocking_sql(rule)}) AND (l.residue + r.residue) > 0"}
            for rule in model.blocking_rules],
        "comparisons": comparisons,
        "retain_intermediate_calculation_columns": True,
        "retain_matching_columns": True,
    }


def blocking_sql(rule: BlockingRule) -> str:
    """Splink (DuckDB) SQL of a blocking rule: ``l.<key> = r.<key>`` for every key, joined with AND."""
    return " AND ".join(f"l.{k} = r.{k}" for k in rule.keys)


def _key_col(name: str) -> Column:
    """Spark Column of blocking key ``name`` over candidate rows (NULL when it cannot be derived); the twin of
    the columns :func:`prepare_records` adds."""
    from pyspark.sql import functions as F

    if name == "id_body":
        return F.when(F.length("id_no") >= 17, F.substring("id_no", 1, 17))
    if name == "id_birth":
        return F.when(F.length("id_no") == 18, F.substring("id_no", 7, 8))
    if name == "district":
        return F.when(F.length("community_code") >= 6, F.substring("community_code", 1, 6))
    if name == "birth_date":
        return F.date_format("birth_date", "yyyyMMdd")
    return F.col(name).cast("string")


def _with_pinyin(df: DataFrame) -> DataFrame:
    """``df`` plus ``name_pinyin`` (:func:`_pinyin`), computed once per distinct name (a pandas UDF on the
    executors; nothing is collected)."""
    import pandas as pd
    from pyspark.sql import functions as F

    def pinyin(names):
        return names.map(_pinyin)

    pinyin.__annotations__ = {"names": pd.Series, "return": pd.Series}  # real types: this module's are strings
    udf = F.pandas_udf(pinyin, "string")  # type: ignore[call-overload]  # stubs lack the type-hint form
    names = df.select("name").where("name IS NOT NULL").distinct().withColumn("name_pinyin", udf("name"))
    return df.join(names, "name", "left")


def _rule_keys(df: DataFrame, rules: Sequence[BlockingRule]) -> DataFrame:
    """The columns of ``df`` plus rule (INT, index in ``rules``) and key (STRING: the rule's key values joined
    with U+0001) — one row per record and rule whose keys are all non-NULL."""
    from pyspark.sql import functions as F

    cols = list(df.columns)
    if any("name_pinyin" in r.keys for r in rules):
        df = _with_pinyin(df)
    entries = []
    for i, rule in enumerate(rules):
        keys = [(F.col(k) if k == "name_pinyin" else _key_col(k)) for k in rule.keys]
        complete = reduce(lambda x, y: x & y, [k.isNotNull() for k in keys])
        entries.append(F.struct(F.lit(i).alias("rule"), F.when(complete, F.concat_ws("\u0001", *keys)).alias("key")))
    return (df.select(*cols, F.explode(F.array(*entries)).alias("_b"))
            .select(*cols, "_b.rule", "_b.key").where("key IS NOT NULL"))


def blocking_reference(residue: DataFrame, reference: DataFrame, model: LinkageModel) -> DataFrame:
    """ID'd candidate records that share a blocking value with a residue record (Spark; nothing collected).

    Args:
        residue, reference: candidate rows (:func:`govlake.unified.persons.person_candidates` columns); ``reference``
            also carries ``person_id``.
        model: :func:`load_model`: its ``blocking_rules`` and ``max_block_size``.

    Returns:
        the ``reference`` rows (its columns) equal to some residue record on every key of at least one
        blocking rule — the rules that generate Splink's candidate pairs (:func:`splink_settings`), evaluated in
        ONE pass over the reference (a row per record and rule, semi-joined with the residue's values,
        broadcast; the matches are kept with ``localCheckpoint``). A value shared by more than ``max_block_size``
        reference records is skipped for its rule: a warning names the rule, how many values and the largest
        block; those records may still come through another rule. So the result has at most
        ``max_block_size`` rows per distinct blocking value of the residue, whatever the population.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    rules = model.blocking_rules
    limit = model.max_block_size
    wanted = _rule_keys(residue.select(*LINK_FIELDS), rules).select("rule", "key").distinct()
    hits = (_rule_keys(reference, rules).join(F.broadcast(wanted), ["rule", "key"], "left_semi")
            .withColumn("_n", F.count("*").over(Window.partitionBy("rule", "key")))
            .localCheckpoint(eager=True))
    skipped = (hits.where(F.col("_n") > limit).groupBy("rule")
               .agg(F.count_distinct("key").alias("values"), F.max("_n").alias("largest")).collect())
    for row in sorted(skipped):
        log.warning("linkage blocking rule %s: %d value(s) shared by more than %d ID'd records (largest block %d) "
                    "skipped", list(rules[row["rule"]].keys), row["values"], limit, row["largest"])
    return (hits.where(F.col("_n") <= limit).select(*reference.columns)
            .dropDuplicates(["record_key"]))


def _pinyin(name: str | None) -> str | None:
    """Toneless pinyin of a name without separators (``张三`` -> ``zhangsan``); other characters kept."""
    if not name:
        return None
    from pypinyin import Style, lazy_pinyin

    return "".join(lazy_pinyin(name.replace("\u00b7", ""), style=Style.NORMAL, errors="default")).lower()


def prepare_records(records, residue_keys: set[str]):
    """pandas frame for Splink: :data:`LINK_FIELDS` as text (birth_date ``yyyyMMdd``) plus the
    :data:`DERIVED_KEYS` — ``name_pinyin``, ``id_body`` (ID characters 1-17), ``id_birth`` (ID characters 7-14 of
    an 18-character ID), ``district`` (community_code characters 1-6), as :func:`_key_col` derives them in
    Spark — and ``residue`` (1 / 0)."""
    import pandas as pd

    df = pd.DataFrame(records, columns=list(LINK_FIELDS)).astype(object)
    df = df.where(df.notna(), None)
    df["birth_date"] = [d.strftime("%Y%m%d") if hasattr(d, "strftime") else d for d in df["birth_date"]]
    df["name_pinyin"] = [_pinyin(n) for n in df["name"]]
    df["id_body"] = [i[:17] if i and len(i) >= 17 else None for i in df["id_no"]]
    df["id_birth"] = [i[6:14] if i and len(i) == 18 else None for i in df["id_no"]]
    df["district"] = [c[:6] if c and len(c) >= 6 else None for c in df["community_code"]]
    df["residue"] = [1 if k in residue_keys else 0 for k in df["record_key"]]
    return df.sort_values("record_key").reset_index(drop=True)


def predict_pairs(records, model: LinkageModel, min_weight: float | None = None):
    """Score candidate pairs with Splink (DuckDB backend) and explain them.

    Args:
        records: :func:`prepare_records` output.
        model: :func:`load_model`.
        min_weight: keep only pairs with match weight ≥ this (filtered in DuckDB, so the pairs below the
            threshold never reach pandas); default every candidate pair.

    Returns:
        pandas DataFrame record_key_l, record_key_r, match_weight (float, log2 odds), match_probability,
        agreed_fields (STRING ``field:level`` for every comparison at a non-null, non-``else`` level, e.g.
        ``name:exact;birth_date:exact``), sorted by the two keys. Empty when there are no candidate pairs.
    """
    import pandas as pd
    import pyarrow as pa
    from splink import Linker
    from splink.backends.duckdb import DuckDBAPI

    cols = ["record_key_l", "record_key_r", "match_weight", "match_probability", "agreed_fields"]
    if len(records) < 2 or not records["residue"].any():
        return pd.DataFrame(columns=cols)
    db = DuckDBAPI()
    table = pa.Table.from_pandas(records, preserve_index=False,
                                 schema=pa.schema([(c, pa.int64() if c == "residue" else pa.string())
                                                   for c in records.columns]))
    linker = Linker(db.register(table, table_name="govlake_link_records"), splink_settings(model),
                    log_level="WARNING")
    pred = linker.inference.predict(threshold_match_weight=min_weight).as_pandas_dataframe()
    if pred.empty:
        return pd.DataFrame(columns=cols)
    labels = {c.name: [lv.label for lv in c.levels if not lv.is_null][::-1] for c in model.comparisons}

    def explain(row) -> str:
        out = []
        for name, names in labels.items():  # gamma: -1 null, 0 else, 1.. from the last level up
            g = int(row[f"gamma_{name}"])
            if g > 0:
                out.append(f"{name}:{names[g]}")
        return ";".join(out)

    pred["agreed_fields"] = pred.apply(explain, axis=1)
    lo = pred[["record_key_l", "record_key_r"]].min(axis=1)
    hi = pred[["record_key_l", "record_key_r"]].max(axis=1)
    out = pd.DataFrame({"record_key_l": lo, "record_key_r": hi, "match_weight": pred["match_weight"].astype(float),
                        "match_probability": pred["match_probability"].astype(float),
                        "agreed_fields": pred["agreed_fields"]})
    return out.sort_values(["record_key_l", "record_key_r"]).reset_index(drop=True)


def synthetic_person_id(record_key: str) -> str:
    """Stable id of a person known only from records without a valid ID: 'U' + the first 17 upper-case hex
    digits of SHA-256(record_key) — 18 characters like a GB 11643 number, never a valid one (a 'U')."""
    return "U" + hashlib.sha256(record_key.encode("utf-8")).hexdigest()[:17].upper()


def assign_person_ids(residue_keys, reference_person: dict[str, str], pairs, threshold: float,
                      existing: dict[str, str] | None = None) -> list[tuple]:
    """Decide the person of every residue record (deterministic; no randomness).

    Args:
        residue_keys: record keys of the records without a valid ID.
        reference_person: record_key -> person_id of the ID'd records.
        pairs: :func:`predict_pairs` output.
        threshold: minimum match weight of a link.
        existing: record_key -> person_id already in ``unified.person_link`` (keeps synthetic ids stable).

    Returns:
        one tuple per residue record, sorted: (record_key, person_id, link_method, match_weight,
        agreed_fields); link_method 'probabilistic' (best ID'd match ≥ threshold; ties: smaller person_id),
        'cluster' (joined through other residue records) or 'singleton' (no link: its own person).
    """
    existing = existing or {}
    residue = sorted(set(residue_keys))
    best: dict[str, tuple] = {}   # residue key -> (weight, person_id, agreed)
    edge_best: dict[str, tuple] = {}
    parent = {k: k for k in residue}

    def find(k):
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for row in pairs.itertuples(index=False):
        if row.match_weight < threshold:
            continue
        for a, b in ((row.record_key_l, row.record_key_r), (row.record_key_r, row.record_key_l)):
            if a not in parent:
                continue
            if b in reference_person:
                cand = (row.match_weight, reference_person[b], row.agreed_fields)
                cur = best.get(a)
                if cur is None or (cand[0], _neg(cand[1])) > (cur[0], _neg(cur[1])):
                    best[a] = cand
            elif b in parent:
                ra, rb = find(a), find(b)
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
                cur = edge_best.get(a)
                if cur is None or row.match_weight > cur[0]:
                    edge_best[a] = (row.match_weight, row.agreed_fields)
    components: dict[str, list[str]] = {}
    for k in residue:
        components.setdefault(find(k), []).append(k)
    out: list[tuple[str, str, str, float | None, str]] = []
    for members in components.values():
        linked = sorted((best[k] for k in members if k in best), key=lambda c: (-c[0], c[1]))
        synthetic = sorted(existing[k] for k in members if existing.get(k, "").startswith("U"))
        cluster_id = linked[0][1] if linked else (synthetic[0] if synthetic else synthetic_person_id(min(members)))
        for k in members:
            if k in best:
                w, pid, agreed = best[k]
                out.append((k, pid, "probabilistic", float(w), agreed))
            elif len(members) > 1:
                w, agreed = edge_best.get(k, (None, ""))
                out.append((k, cluster_id, "cluster", None if w is None else float(w), agreed))
            else:
                out.append((k, cluster_id, "singleton", None, ""))
    return sorted(out)


def _neg(s: str) -> tuple:
    return tuple(-ord(c) for c in s)


def link_residue(spark: SparkSession, residue: DataFrame, reference: DataFrame, existing: DataFrame | None = None,
                 *, model: LinkageModel) -> DataFrame:
    """Link the candidate records without a valid ID (Spark in, Spark out; the residue is collected).

    The driver holds the residue, its blocked reference records (:func:`blocking_reference`: at most
    ``max_block_size`` per distinct blocking value of the residue) and the candidate pairs at or above the
    threshold — all proportional to the residue, never to the population.

    Args:
        residue: candidate rows without a valid ID (:func:`govlake.unified.persons.person_candidates` columns, unique
            on record_key, record_key not NULL).
        reference: ID'd candidate rows with ``person_id``.
        existing: optional DataFrame record_key, person_id (``unified.person_link``), for stable ids.
        model: :func:`load_model`.

    Returns:
        DataFrame :data:`LINK_SCHEMA` — one row per residue record (see :func:`assign_person_ids`).
    """
    res_rows = [tuple(r) for r in residue.select(*LINK_FIELDS).collect()]
    if not res_rows:
        return spark.createDataFrame([], LINK_SCHEMA)
    residue_keys = {r[0] for r in res_rows}
    ref = blocking_reference(residue, reference, model).select(*LINK_FIELDS, "person_id").collect()
    reference_person = {r["record_key"]: r["person_id"] for r in ref}
    records = prepare_records(res_rows + [tuple(r)[:-1] for r in ref], residue_keys)
    threshold = model.match_weight_threshold
    pairs = predict_pairs(records, model, min_weight=threshold)  # assign_person_ids ignores pairs below it
    log.info("linkage: %d residue records, %d blocked reference records, %d pairs at or above %s",
             len(res_rows), len(ref), len(pairs), threshold)
    known = {}
    if existing is not None:
        known = {r[0]: r[1] for r in existing.join(residue.select("record_key"), "record_key", "left_semi")
                 .select("record_key", "person_id").collect()}
    rows = assign_person_ids(residue_keys, reference_person, pairs, threshold, known)
    return spark.createDataFrame(rows, LINK_SCHEMA)


# --- accuracy against the sample generator's truth ----------------------------------------------------

def _pairs(n):
    return n * (n - 1) // 2


def linkage_accuracy(links, truth) -> dict[str, Any]:
    """Pairwise precision and recall of person linkage, overall and per department.

    Args:
        links: pandas DataFrame record_key, department ('<source>.<object>'), person_id — the predicted
            clusters (``unified.person_link``).
        truth: pandas DataFrame record_key, true_person — the true person of each delivered record.

    Pairwise definition (standard for entity resolution, e.g. Christen, *Data Matching*, 2012, §7): a pair
    of records is predicted linked when they share a person_id, truly linked when they share a true person;
    precision = true links / predicted links, recall = true links / true pairs. Per department, the pairs
    counted are those with at least one record of that department. Only records present in both ``links``
    and ``truth`` are scored; ``coverage`` is the share of the department's truth records that reached
    unified (the rest were quarantined).

    Returns:
        {"overall": {...}, "departments": {department: {"records", "truth_records", "coverage",
        "predicted_pairs", "true_pairs", "true_positive_pairs", "precision", "recall"}}}; precision or
        recall is None when its denominator is 0.
    """
    t = truth.drop_duplicates("record_key")
    df = links.merge(t, on="record_key", how="inner")
    dept_of_truth = t["record_key"].str.split(":").str[:2].str.join(".")

    def scores(d: str | None) -> dict[str, Any]:
        def count(groups) -> int:
            total = 0
            for _, g in df.groupby(groups, sort=True):
                n = len(g)
                n_out = n if d is None else int((g["department"] != d).sum())
                total += _pairs(n) - (0 if d is None else _pairs(n_out))
            return total

        p, tr, tp = count(["person_id"]), count(["true_person"]), count(["person_id", "true_person"])
        recs = len(df) if d is None else int((df["department"] == d).sum())
        n_truth = len(t) if d is None else int((dept_of_truth == d).sum())
        return {"records": recs, "truth_records": n_truth, "coverage": round(recs / n_truth, 6) if n_truth else None,
                "predicted_pairs": p, "true_pairs": tr, "true_positive_pairs": tp,
                "precision": round(tp / p, 6) if p else None, "recall": round(tp / tr, 6) if tr else None}

    departments = sorted(set(df["department"]) | set(dept_of_truth))
    return {"overall": scores(None), "departments": {d: scores(d) for d in departments},
            "method": "pairwise (record pairs sharing a person), pairs with ≥1 record of the department",
            "unscored_link_records": int(len(links) - len(df))}


def role_objects() -> set[str]:
    """``'<source>:<object>'`` of every registry object whose rows name several persons (``unified.roles``)."""
    from govlake.extract.registry import load_registry

    return {f"{name}:{obj.name}" for name, spec in load_registry().items() for obj in spec.objects.values()
            if obj.unified is not None and obj.unified.roles}


def truth_records(truth_dir: Path, multi_person: set[str] | None = None):
    """The true person of every delivered person record: hukou.persons rows are their own person
    (``person_key`` = person_no); other departments' rows from ``links.csv``. For an object naming several
    persons per row (``multi_person``, default :func:`role_objects`: civil.marriages, health.births) every role
    of ``links.csv`` is a record ``<source>:<table>:<row_key>#<role>`` (husband, wife; child, mother, father),
    as :func:`govlake.unified.persons.person_candidates` names them; for the others the role naming the record's subject
    (applicant, employee, insured, deceased, recipient, mover) is the record ``<source>:<table>:<row_key>``.

    Returns:
        pandas DataFrame record_key, true_person.
    """
    import pandas as pd

    multi_person = role_objects() if multi_person is None else multi_person
    persons = pd.read_csv(truth_dir / "persons.csv", dtype=str)
    hukou = pd.DataFrame({"record_key": "hukou:persons:" + persons["person_key"], "true_person": persons["person_key"]})
    links = pd.read_csv(truth_dir / "links.csv", dtype=str)
    obj = links["source"] + ":" + links["table"]
    multi = obj.isin(sorted(multi_person))
    links = links[multi | ~links["role"].isin(["mother", "father"])]
    multi = multi[links.index]
    key = links["source"] + ":" + links["table"] + ":" + links["row_key"]
    key = key.where(~multi, key + "#" + links["role"])
    other = pd.DataFrame({"record_key": key, "true_person": links["person_key"]})
    return pd.concat([hukou, other], ignore_index=True).drop_duplicates("record_key").sort_values("record_key")


def report(spark: SparkSession, settings: Settings, logical_date: dt.date) -> dict[str, Any]:
    """Write the linkage accuracy report of ``logical_date`` to ``<reports>/linkage/<date>.json`` and ``.md``
    (each atomically, :mod:`govlake.core.fsio`).

    Reads ``unified.person_link`` (records with batch_date ≤ ``logical_date``) and the sample truth under
    ``<sources>/truth``.

    Returns:
        the report (see :func:`linkage_accuracy`) plus ``logical_date`` and ``paths``.

    Raises:
        FileNotFoundError: no truth folder (sources are not the generated sample) or no person_link table.
    """
    from pyspark.sql import functions as F

    truth_dir = settings.sources_dir / "truth"
    if not (truth_dir / "links.csv").is_file():
        raise FileNotFoundError(f"no sample truth at {truth_dir}: the report needs the generated sample municipality")
    path = settings.table_path("unified", "person_link")
    links: pd.DataFrame = (spark.read.format("delta").load(path)
             .where(F.col("batch_date") <= F.lit(logical_date).cast("date"))
             .select("record_key", F.concat_ws(".", "source", "source_object").alias("department"), "person_id",
                     "link_method")
             .toPandas())
    result = linkage_accuracy(links[["record_key", "department", "person_id"]], truth_records(truth_dir))
    result["link_methods"] = {k: int(v) for k, v in links["link_method"].value_counts().sort_index().items()}
    result["logical_date"] = logical_date.isoformat()
    out = settings.reports_dir / "linkage"
    out.mkdir(parents=True, exist_ok=True)
    jpath, mpath = out / f"{logical_date.isoformat()}.json", out / f"{logical_date.isoformat()}.md"
    result["paths"] = {"json": str(jpath), "md": str(mpath)}
    fsio.atomic_write_text(jpath, json.dumps(result, ensure_ascii=False, indent=2) + "\n")
    fsio.atomic_write_text(mpath, _markdown(result))
    return result


def _markdown(r: dict[str, Any]) -> str:
    fmt = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
    lines = [f"# Person linkage accuracy — {r['logical_date']}", "",
             f"Method: {r['method']}; truth: the sample generator's truth/persons.csv and truth/links.csv.", "",
             "| department | records | coverage | predicted pairs | true pairs | true positives | precision | recall |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, s in [("**all**", r["overall"])] + sorted(r["departments"].items()):
        lines.append(f"| {name} | {s['records']} | {fmt(s['coverage'])} | {s['predicted_pairs']} | {s['true_pairs']} | "
                     f"{s['true_positive_pairs']} | {fmt(s['precision'])} | {fmt(s['recall'])} |")
    lines += ["", f"Link methods: {r['link_methods']}", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m govlake.unified.linkage report [--date YYYY-MM-DD]``; prints the report's paths and overall
    scores."""
    parser = argparse.ArgumentParser(prog="python -m govlake.unified.linkage", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser("report", help="linkage precision/recall per department against the sample truth")
    rep.add_argument("--date", default=SAMPLE_LOGICAL_DATE, type=dt.date.fromisoformat)
    args = parser.parse_args(argv)
    from govlake.core.spark import get_spark

    settings = Settings.from_env()
    result = report(get_spark(settings, app_name="govlake-linkage-report"), settings, args.date)
    print(json.dumps({"overall": result["overall"], "paths": result["paths"]}, ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
