"""The table catalog: one contract per table in ``tables/<layer>.<table>.yaml``, the one place where a table's
layer, grain, business key, partitioning and columns are stated. The stages read keys, partition columns and the
tables of a layer from here; ``tests/core/test_catalog.py`` checks each contract against its suite and writer.

Contract fields read by the code (others — description, producer, inputs, rules, kpis, expectations — document):

- ``name`` (``<layer>.<table>``, equal to the file name), ``layer``, ``grain``
- ``primary_key``: list of columns, unique per row (the MERGE key of a unified table)
- ``partition_by``: list of Delta partition columns (empty: not partitioned); a partitioned table holds one
  snapshot or period per logical date in that column
- ``columns``: list of ``{name, type, nullable[, unit, description]}`` in write order (Spark SQL type names)
- unified tables only: ``publish_order`` (1..n), ``write`` (``merge`` | ``rewrite``), ``insert_only`` (columns
  kept from the first insert), ``suite`` (the expectation suite file checked before publishing)
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

from govlake.core.config import REPO_ROOT

TABLES_DIR = REPO_ROOT / "tables"
LAYERS = ("raw", "staging", "quarantine", "unified", "marts", "analysis", "ops", "catalog", "governance")
WRITES = ("merge", "rewrite")


class CatalogError(ValueError):
    """A contract file is missing a field or states it wrongly (the message names the file and the field)."""


@dataclass(frozen=True)
class Column:
    """One column of a contract: name, Spark SQL type name (upper case), nullable."""

    name: str
    type: str
    nullable: bool


@dataclass(frozen=True)
class TableSpec:
    """One table's contract (see the module docstring for the fields)."""

    name: str
    layer: str
    grain: str
    primary_key: tuple[str, ...]
    partition_by: tuple[str, ...]
    columns: tuple[Column, ...]
    publish_order: int | None = None
    write: str = "merge"
    insert_only: tuple[str, ...] = ()
    suite: str | None = None

    @property
    def table(self) -> str:
        """The table's name without its layer."""
        return self.name.split(".", 1)[1]

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def partition_column(self) -> str | None:
        """The single date partition column, or None for a table rewritten whole or MERGEd."""
        return self.partition_by[0] if self.partition_by else None


def _names(path: Path, doc: dict, field: str, required: bool = True) -> tuple[str, ...]:
    value = doc.get(field, None if required else [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise CatalogError(f"{path.name}: field {field!r} must be a list of column names, got {value!r}")
    return tuple(value)


def parse_contract(path: Path) -> TableSpec:
    """Parse one contract file.

    Raises:
        CatalogError: a required field is missing or malformed, the name does not match the file name, a key or
            partition column is not a column, or a unified field is invalid.
    """
    # libyaml's safe loader when built: the contracts are parsed ten times faster
    doc = yaml.load(path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506
    if not isinstance(doc, dict):
        raise CatalogError(f"{path.name}: not a mapping")
    for field in ("name", "layer", "grain"):
        if not isinstance(doc.get(field), str) or not doc[field]:
            raise CatalogError(f"{path.name}: field {field!r} is missing or empty")
    name, layer = doc["name"], doc["layer"]
    if f"{name}.yaml" != path.name or name.split(".", 1)[0] != layer or layer not in LAYERS:
        raise CatalogError(f"{path.name}: name {name!r} and layer {layer!r} must match the file name "
                           f"<layer>.<table>.yaml with a layer of {', '.join(LAYERS)}")
    raw_columns = doc.get("columns")
    if not isinstance(raw_columns, list) or not raw_columns:
        raise CatalogError(f"{path.name}: field 'columns' must be a non-empty list")
    columns = []
    for i, c in enumerate(raw_columns):
        if not isinstance(c, dict) or not {"name", "type", "nullable"} <= set(c):
            raise CatalogError(f"{path.name}: columns[{i}] needs name, type and nullable")
        columns.append(Column(str(c["name"]), str(c["type"]).upper(), bool(c["nullable"])))
    names = {c.name for c in columns}
    key, partition = _names(path, doc, "primary_key"), _names(path, doc, "partition_by", required=False)
    for field, cols in (("primary_key", key), ("partition_by", partition)):
        if missing := [c for c in cols if c not in names]:
            raise CatalogError(f"{path.name}: field {field!r} names columns that are not in 'columns': {missing}")
    spec = TableSpec(name=name, layer=layer, grain=doc["grain"], primary_key=key, partition_by=partition,
                     columns=tuple(columns), publish_order=doc.get("publish_order"), write=doc.get("write", "merge"),
                     insert_only=_names(path, doc, "insert_only", required=False), suite=doc.get("suite"))
    if layer == "unified":
        if not isinstance(spec.publish_order, int) or spec.write not in WRITES or not spec.suite:
            raise CatalogError(f"{path.name}: a unified table needs publish_order (int), write ({'/'.join(WRITES)}) "
                               "and suite")
        if not (REPO_ROOT / spec.suite).is_file():
            raise CatalogError(f"{path.name}: field 'suite' names a missing file {spec.suite}")
    return spec


@cache
def load_catalog(tables_dir: Path = TABLES_DIR) -> dict[str, TableSpec]:
    """Every contract under ``tables_dir``, by ``<layer>.<table>`` (parsed once per process).

    Raises:
        CatalogError: as :func:`parse_contract`.
    """
    return {spec.name: spec for spec in map(parse_contract, sorted(tables_dir.glob("*.yaml")))}


def table(name: str) -> TableSpec:
    """The contract of ``<layer>.<table>``.

    Raises:
        KeyError: no contract for the table.
    """
    try:
        return load_catalog()[name]
    except KeyError:
        raise KeyError(f"no contract tables/{name}.yaml in the table catalog") from None


def tables(layer: str) -> list[TableSpec]:
    """The contracts of a layer, by publish order (unified) or name."""
    specs = [s for s in load_catalog().values() if s.layer == layer]
    return sorted(specs, key=lambda s: (s.publish_order or 0, s.name))


def partitioned_tables(layer: str) -> dict[str, str]:
    """``<layer>.<table>`` -> date partition column, for every partitioned table of ``layer``."""
    return {s.name: s.partition_column for s in tables(layer) if s.partition_column}


def partition_column(name: str) -> str:
    """The date partition column of ``<layer>.<table>``.

    Raises:
        KeyError: no contract for the table.
        ValueError: the contract declares no partition column.
    """
    column = table(name).partition_column
    if column is None:
        raise ValueError(f"tables/{name}.yaml declares no partition_by column")
    return column
