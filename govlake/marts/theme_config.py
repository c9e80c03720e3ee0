"""Typed theme configuration: ``schemas/themes/<theme>.yaml`` parsed into frozen dataclasses.

One loader (:func:`load_theme`) reads a theme file and checks it field by field; every error is a
:class:`ThemeConfigError` naming the file and the field (``schemas/themes/grid.yaml: params.top_n: …``). The
stages read the configuration at their entry points and pass :class:`ThemeConfig` objects to the transforms
(:func:`govlake.marts.themes.build_theme_tables`, :func:`govlake.analysis.services.run_services`), which read no
file themselves.

Layout of a theme file::

    theme: <name>            # equal to the file stem; output tables analysis.<name>_<service>_<service name>
    title_zh: <title>        # optional
    params: {...}            # optional, the fields of ThemeParams
    marts: [<mart>, ...]     # optional, names of govlake.marts.themes.MART_BUILDERS
    services:                # optional
      - name: <suffix>
        service: <one of govlake.analysis.services.SERVICES>
        table: <input key, e.g. unified.event>
        where: <Spark SQL boolean expression>          # optional
        columns: {<name>: <Spark SQL expression>}      # optional, added before the service
        params: {<keyword argument of the service>: <value>}   # optional

This module imports neither pyspark nor pandas.
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from govlake.core.config import SCHEMAS_DIR

THEMES_DIR = SCHEMAS_DIR / "themes"
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class ThemeConfigError(ValueError):
    """A theme file that is not valid; the message names the file and the field."""

    def __init__(self, source: str, field: str, problem: str) -> None:
        super().__init__(f"{source}: {field}: {problem}")
        self.source, self.field, self.problem = source, field, problem


@dataclass(frozen=True)
class ThemeParams:
    """``params`` of a theme; every field is optional (the defaults are the seed's values)."""

    #: Days of the period of the period tables (hot fields, hotspots, worker statistics, repeat summary, cube).
    period_days: int = 28
    #: Categories per area of ``marts.grid_hot_fields``.
    top_n: int = 10
    #: GB/T 2260 code of the city (the city rows of the grid marts).
    city_code: str = "130100"
    #: Handling deadline (处置时限) in hours for the on-time closure rate.
    deadline_hours: float = 120.0
    #: Repeat complaint window: same place and 3-level category within this many days.
    repeat_window_days: int = 30
    #: Keywords kept in ``marts.grid_cross_cube``.
    max_keywords: int = 30
    #: Age (周岁) from which a person is elderly for the household marts (老年人权益保障法 第二条).
    elderly_age: int = 60
    #: Census floor of educational attainment (persons aged 6+).
    education_min_age: int = 6
    #: Census floor of marital status (persons aged 15+).
    marital_min_age: int = 15


#: ThemeParams fields → smallest allowed value.
_PARAM_MIN: dict[str, float] = {"period_days": 1, "top_n": 1, "deadline_hours": 0, "repeat_window_days": 1,
                                "max_keywords": 1, "elderly_age": 0, "education_min_age": 0, "marital_min_age": 0}


@dataclass(frozen=True)
class ServiceSpec:
    """One ``services`` entry of a theme (see the module docstring)."""

    name: str
    service: str
    table: str
    where: str | None = None
    #: (column name, Spark SQL expression) pairs, in file order.
    columns: tuple[tuple[str, str], ...] = ()
    #: Keyword arguments of the service function (read-only; YAML lists become tuples).
    params: Mapping[str, Any] = dataclasses.field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class ThemeConfig:
    """A parsed theme file."""

    name: str
    params: ThemeParams = ThemeParams()
    marts: tuple[str, ...] = ()
    services: tuple[ServiceSpec, ...] = ()
    title_zh: str = ""
    #: The file it was read from (or a label), for messages.
    source: str = "<theme>"


def _frozen(value: Any) -> Any:
    """YAML value with lists as tuples and mappings read-only (recursively)."""
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, dict):
        return MappingProxyType({k: _frozen(v) for k, v in value.items()})
    return value


def _mapping(source: str, field: str, value: Any) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ThemeConfigError(source, field, f"expected a mapping with text keys, got {value!r}")
    return value


def _text(source: str, field: str, value: Any, required: bool = True) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ThemeConfigError(source, field, f"expected a non-empty string, got {value!r}")
    return value


def _names(source: str, field: str, value: Any) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ThemeConfigError(source, field, f"expected a list, got {value!r}")
    return value


def parse_params(raw: Any, source: str, field: str = "params") -> ThemeParams:
    """``params`` of a theme as :class:`ThemeParams`.

    Raises:
        ThemeConfigError: an unknown parameter, a value of the wrong type or below its minimum.
    """
    values = _mapping(source, field, raw)
    fields = {f.name: f for f in dataclasses.fields(ThemeParams)}
    out: dict[str, Any] = {}
    for key, v in values.items():
        where = f"{field}.{key}"
        if key not in fields:
            raise ThemeConfigError(source, where, f"unknown parameter; parameters are {', '.join(fields)}")
        default = fields[key].default
        if isinstance(default, str):
            if not isinstance(v, str) or not re.fullmatch(r"\d{6}", v):
                raise ThemeConfigError(source, where, f"expected a 6-digit code as a quoted string, got {v!r}")
        elif isinstance(default, float):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ThemeConfigError(source, where, f"expected a number, got {v!r}")
            v = float(v)
        elif isinstance(v, bool) or not isinstance(v, int):
            raise ThemeConfigError(source, where, f"expected an integer, got {v!r}")
        if key in _PARAM_MIN and v < _PARAM_MIN[key]:
            raise ThemeConfigError(source, where, f"must be >= {_PARAM_MIN[key]:g}, got {v!r}")
        out[key] = v
    return ThemeParams(**out)


_SERVICE_KEYS = ("name", "service", "table", "where", "columns", "params")


def parse_service(raw: Any, source: str, field: str, known_services: Collection[str] | None = None) -> ServiceSpec:
    """One ``services`` entry as :class:`ServiceSpec`.

    Raises:
        ThemeConfigError: a missing or unknown key, a value of the wrong type, an unknown service.
    """
    spec = _mapping(source, field, raw)
    for key in spec:
        if key not in _SERVICE_KEYS:
            raise ThemeConfigError(source, f"{field}.{key}", f"unknown key; keys are {', '.join(_SERVICE_KEYS)}")
    name = _text(source, f"{field}.name", spec.get("name"))
    assert name is not None
    if not _NAME.match(name):
        raise ThemeConfigError(source, f"{field}.name", f"expected lower_snake_case, got {name!r}")
    service = _text(source, f"{field}.service", spec.get("service"))
    assert service is not None
    if known_services is not None and service not in known_services:
        raise ThemeConfigError(source, f"{field}.service",
                               f"unknown service {service!r}; services are {', '.join(known_services)}")
    table = _text(source, f"{field}.table", spec.get("table"))
    assert table is not None
    where = _text(source, f"{field}.where", spec.get("where"), required=False)
    columns = _mapping(source, f"{field}.columns", spec.get("columns"))
    for col, expr in columns.items():
        _text(source, f"{field}.columns.{col}", expr)
    params = _mapping(source, f"{field}.params", spec.get("params"))
    return ServiceSpec(name=name, service=service, table=table, where=where,
                       columns=tuple(columns.items()), params=_frozen(params))


_THEME_KEYS = ("theme", "title_zh", "params", "marts", "services")


def parse_theme(raw: Any, source: str, expected_name: str | None = None,
                known_marts: Collection[str] | None = None,
                known_services: Collection[str] | None = None) -> ThemeConfig:
    """A theme document (the YAML as Python values) as :class:`ThemeConfig`.

    Args:
        raw: the parsed YAML document.
        source: the file (or a label) named in errors.
        expected_name: the file stem; ``theme`` must equal it.
        known_marts, known_services: allowed mart and service names (not checked when None).

    Raises:
        ThemeConfigError: the document is not valid (the message names ``source`` and the field).
    """
    doc = _mapping(source, "(document)", raw)
    if not doc:
        raise ThemeConfigError(source, "(document)", "empty theme file")
    for key in doc:
        if key not in _THEME_KEYS:
            raise ThemeConfigError(source, key, f"unknown key; keys are {', '.join(_THEME_KEYS)}")
    name = _text(source, "theme", doc.get("theme"))
    assert name is not None
    if not _NAME.match(name):
        raise ThemeConfigError(source, "theme", f"expected lower_snake_case, got {name!r}")
    if expected_name is not None and name != expected_name:
        raise ThemeConfigError(source, "theme", f"{name!r} differs from the file name {expected_name!r}")
    title = _text(source, "title_zh", doc.get("title_zh"), required=False) or ""
    params = parse_params(doc.get("params"), source)
    marts: list[str] = []
    for i, m in enumerate(_names(source, "marts", doc.get("marts"))):
        if not isinstance(m, str):
            raise ThemeConfigError(source, f"marts[{i}]", f"expected a mart name, got {m!r}")
        if known_marts is not None and m not in known_marts:
            raise ThemeConfigError(source, f"marts[{i}]", f"unknown mart {m!r}; marts are {', '.join(known_marts)}")
        if m in marts:
            raise ThemeConfigError(source, f"marts[{i}]", f"mart {m!r} listed twice")
        marts.append(m)
    services = tuple(parse_service(s, source, f"services[{i}]", known_services)
                     for i, s in enumerate(_names(source, "services", doc.get("services"))))
    seen: set[tuple[str, str]] = set()
    for i, s in enumerate(services):
        if (s.service, s.name) in seen:
            raise ThemeConfigError(source, f"services[{i}].name",
                                   f"{s.service} service {s.name!r} listed twice (same output table)")
        seen.add((s.service, s.name))
    return ThemeConfig(name=name, params=params, marts=tuple(marts), services=services, title_zh=title,
                       source=source)


def theme_path(name: str, themes_dir: Path = THEMES_DIR) -> Path:
    """The file of theme ``name``."""
    return themes_dir / f"{name}.yaml"


def list_themes(themes_dir: Path = THEMES_DIR) -> list[str]:
    """Names of the configured themes (sorted file stems of ``<themes_dir>/*.yaml``)."""
    return sorted(p.stem for p in themes_dir.glob("*.yaml"))


def load_theme(name: str, themes_dir: Path = THEMES_DIR, known_marts: Collection[str] | None = None,
               known_services: Collection[str] | None = None) -> ThemeConfig:
    """Read and check ``<themes_dir>/<name>.yaml``.

    Raises:
        FileNotFoundError: no such theme.
        ThemeConfigError: the file is not valid YAML or not a valid theme (the message names the file and field).
    """
    import yaml

    path = theme_path(name, themes_dir)
    text = path.read_text(encoding="utf-8")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"(yaml, line {mark.line + 1})" if mark is not None else "(yaml)"
        raise ThemeConfigError(str(path), where, str(e).replace("\n", " ")) from None
    return parse_theme(raw, str(path), name, known_marts, known_services)
