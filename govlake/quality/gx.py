"""The files of GovLake's Great Expectations 1.24 project (``<reports>/gx``): written atomically, the project file
kept as GovLake's config and recovered when a crash broke it.

GX writes its files in place (``open(path, "w")`` then write): a reader sees an empty or half-written suite, result,
page or ``great_expectations.yml`` while it is written, and a writer killed mid-write leaves it so for every later
run. Here, through :mod:`govlake.core.fsio`:

* :class:`AtomicTupleFilesystemStoreBackend`: the backend of every store (expectation suites, validation results,
  validation definitions, checkpoints) and of the Data Docs site (pages, index, static assets), named by
  ``class_name``/``module_name`` in the project config, the way GX plugs in a store backend;
* ``great_expectations.yml`` is created by GovLake (:func:`ensure_project`, from :func:`project_config`) instead of
  GX's scaffolding, checked on every open, recovered when empty or unreadable (a warning is logged; the broken file
  is kept as ``great_expectations.yml.broken``) and brought up to GovLake's settings when older;
* :class:`GovLakeFileDataContext`: GX's file context whose project-config saves (when a fluent datasource, asset
  or batch definition is added) are atomic and skipped when the file already holds the config. GX's one other
  writer of the file, ``context.variables.save()``, is never called: the settings it saved (analytics and progress
  bars off) are in the file from the start.

Every function here reads or writes the project: call it under ``govlake.quality.rules.gx_project_lock`` (one process
and one thread at a time; GX's YAML parsers are module-level objects that two threads must not use at once).
"""
from __future__ import annotations

import copy
import io
import logging
import os
from pathlib import Path

from great_expectations.data_context.data_context.file_data_context import (
    FileDataContext,
)
from great_expectations.data_context.data_context_variables import (
    DataContextVariableSchema,
)
from great_expectations.data_context.store.inline_store_backend import (
    InlineStoreBackend,
)
from great_expectations.data_context.store.tuple_store_backend import (
    TupleFilesystemStoreBackend,
)
from great_expectations.data_context.types.base import (
    DataContextConfig,
    DataContextConfigDefaults,
)

from govlake.core import fsio

logger = logging.getLogger(__name__)

#: The project file, in the project folder.
PROJECT_FILE = "great_expectations.yml"
#: Where :func:`ensure_project` keeps the content of a project file it found broken.
BROKEN_SUFFIX = ".broken"
_GX_BACKEND = "TupleFilesystemStoreBackend"
_GX_STORE_MODULE = "great_expectations.data_context.store"


class AtomicTupleFilesystemStoreBackend(TupleFilesystemStoreBackend):
    """GX's ``TupleFilesystemStoreBackend`` (same keys, paths and configuration) whose writes are atomic
    (:func:`govlake.core.fsio.atomic_write_bytes`): a reader of a suite, a validation result or a Data Docs page sees
    the old or the new file, never a part of one. Listings skip the temporary file a killed writer may leave."""

    def _set(self, key, value, **kwargs):
        if not isinstance(key, tuple):
            key = key.to_tuple()
        filepath = os.path.join(self.full_base_directory, self._convert_key_to_filepath(key))
        fsio.atomic_write_bytes(filepath, value.encode("utf-8") if isinstance(value, str) else value)
        return filepath

    def list_keys(self, prefix: tuple = ()) -> list[tuple]:
        return [key for key in super().list_keys(prefix) if not (key and fsio.is_temp_name(str(key[-1])))]


class _AtomicInlineStoreBackend(InlineStoreBackend):
    """GX's ``InlineStoreBackend`` (the datasource store, kept inside the project file) whose saves of the project
    file are :func:`write_project_file`."""

    def _save_changes(self) -> None:
        context = self._data_context
        write_project_file(Path(context.root_directory), context.config.to_yaml_str())


class GovLakeFileDataContext(FileDataContext):
    """GX's ``FileDataContext`` whose saves of ``great_expectations.yml`` are atomic and skipped when unchanged
    (:func:`write_project_file`). Open it with :func:`open_context` (which creates or repairs the project file
    first, so GX's own scaffolding never writes it). A subclass because FileDataContext hard-codes both writers of
    the file (no project-config setting names them); it overrides two of its hooks and patches nothing in GX."""

    def _save_project_config(self) -> None:
        # as FileDataContext._save_project_config of GX 1.24 (fluent datasources into the config, then serialised),
        # with the write of govlake.core.fsio instead of open(path, "w")
        fluent_datasources = self._synchronize_fluent_datasources()
        if fluent_datasources:
            self.fluent_config.update_datasources(datasources=fluent_datasources)
            fluent = self.fluent_config._exclude_name_fields_from_fluent_datasources(
                config=self.fluent_config._json_dict())
            self.config._commented_map.update(fluent)
        write_project_file(Path(self.root_directory), self.config.to_yaml_str())

    def _init_datasource_store(self):
        from great_expectations.data_context.store.datasource_store import (
            DatasourceStore,
        )

        # FileDataContext's datasource store, with the atomic inline backend
        return DatasourceStore(
            store_name="datasource_store",
            store_backend={"class_name": _AtomicInlineStoreBackend.__name__, "module_name": __name__,
                           "resource_type": DataContextVariableSchema.DATASOURCES},
            runtime_environment={"root_directory": self.root_directory, "data_context": self})


def write_project_file(gx_dir: Path, text: str) -> bool:
    """Write ``text`` as ``<gx_dir>/great_expectations.yml`` atomically, unless the file already holds exactly
    ``text``; returns whether it was written."""
    written = fsio.atomic_write_text(Path(gx_dir) / PROJECT_FILE, text, skip_unchanged=True)
    if written:
        logger.debug("wrote %s", Path(gx_dir) / PROJECT_FILE)
    return written


def _atomic_backend(backend: dict) -> bool:
    """Point a store backend config at :class:`AtomicTupleFilesystemStoreBackend` if it names GX's filesystem
    backend; returns whether it changed."""
    if backend.get("class_name") == _GX_BACKEND and backend.get("module_name", _GX_STORE_MODULE) == _GX_STORE_MODULE:
        backend["class_name"] = AtomicTupleFilesystemStoreBackend.__name__
        backend["module_name"] = __name__
        return True
    return False


def _govlake_settings(config: dict) -> bool:
    """Bring a project config (a mapping as loaded from the YAML file) to GovLake's settings, in place: atomic
    store and Data Docs backends, analytics and progress bars off, no config variables file (GovLake substitutes
    none, so GX reads no ``uncommitted/config_variables.yml``). Everything else (fluent datasources, ids) is kept.
    Returns whether anything changed."""
    changed = False
    for store in (config.get("stores") or {}).values():
        if isinstance(store, dict) and isinstance(store.get("store_backend"), dict):
            changed |= _atomic_backend(store["store_backend"])
    for site in (config.get("data_docs_sites") or {}).values():
        if isinstance(site, dict) and isinstance(site.get("store_backend"), dict):
            changed |= _atomic_backend(site["store_backend"])
    if config.get("analytics_enabled") is not False:
        config["analytics_enabled"] = False
        changed = True
    bars = config.get("progress_bars")
    if not isinstance(bars, dict) or bars.get("globally") is not False or bars.get("metric_calculations") is not False:
        config["progress_bars"] = {"globally": False, "metric_calculations": False}
        changed = True
    if config.get("config_variables_file_path"):
        config["config_variables_file_path"] = None
        changed = True
    return changed


def project_config() -> dict:
    """GovLake's project config: GX 1.24's default stores and local Data Docs site (same folders as a project GX
    scaffolds: ``expectations/``, ``uncommitted/validations/``, ``validation_definitions/``, ``checkpoints/``,
    ``uncommitted/data_docs/local_site/``) on :class:`AtomicTupleFilesystemStoreBackend`, analytics and progress bars
    off, no plugins folder, no config variables file, no datasource (``govlake.quality.rules.run_checkpoint`` adds its
    own)."""
    defaults = DataContextConfigDefaults
    config = {
        "config_version": defaults.DEFAULT_CONFIG_VERSION.value,
        "stores": copy.deepcopy(defaults.DEFAULT_STORES.value),
        "expectations_store_name": defaults.DEFAULT_EXPECTATIONS_STORE_NAME.value,
        "validation_results_store_name": defaults.DEFAULT_VALIDATIONS_STORE_NAME.value,
        "checkpoint_store_name": defaults.DEFAULT_CHECKPOINT_STORE_NAME.value,
        "data_docs_sites": copy.deepcopy(defaults.DEFAULT_DATA_DOCS_SITES.value),
    }
    _govlake_settings(config)
    return config


def _yaml():
    from ruamel.yaml import YAML

    yaml = YAML()  # a new parser per use: a ruamel YAML object keeps its parser's state
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.default_flow_style = False
    return yaml


def _dump(config) -> str:
    out = io.StringIO()
    _yaml().dump(config, out)
    return out.getvalue()


def _why_broken(text: str):
    """``(config, None)`` for a usable project file's text, ``(None, reason)`` otherwise: it must be a YAML mapping
    that GX accepts (``DataContextConfig``) and that names its stores and Data Docs sites."""
    try:
        config = _yaml().load(text)
    except Exception as exc:  # noqa: BLE001 - any parser error means the same: unreadable
        return None, f"not YAML ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    if not isinstance(config, dict):
        return None, "empty" if config is None else f"not a mapping ({type(config).__name__})"
    missing = [k for k in ("config_version", "stores", "expectations_store_name", "validation_results_store_name",
                           "checkpoint_store_name", "data_docs_sites") if not config.get(k)]
    if missing:
        return None, f"no {', '.join(missing)}"
    try:
        DataContextConfig.from_commented_map(commented_map=copy.deepcopy(config))
    except Exception as exc:  # noqa: BLE001 - GX's schema errors have several types
        return None, f"not a GX project config ({type(exc).__name__}: {exc})"
    return config, None


def ensure_project(gx_dir: Path) -> None:
    """Make ``<gx_dir>/great_expectations.yml`` a usable GovLake project file, writing it only when needed:

    * missing: written from :func:`project_config`;
    * empty or unreadable (e.g. left by a writer killed mid-write): logged as a warning, its content kept as
      ``great_expectations.yml.broken``, and written from :func:`project_config` (its datasources, which
      ``govlake.quality.rules.run_checkpoint`` adds again, are lost; suites, results and pages are separate files and
      stay);
    * usable but not on GovLake's settings (an older project): rewritten with them (:func:`_govlake_settings`);
    * otherwise: left untouched.

    Call it under ``govlake.quality.rules.gx_project_lock``.

    Raises:
        OSError: the folder or the file cannot be read or written.
    """
    gx_dir = Path(gx_dir)
    path = gx_dir / PROJECT_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        gx_dir.mkdir(parents=True, exist_ok=True)
        write_project_file(gx_dir, _dump(project_config()))
        return
    try:
        config, reason = _why_broken(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        config, reason = None, f"not UTF-8 ({exc})"
    if config is None:
        broken = path.with_name(PROJECT_FILE + BROKEN_SUFFIX)
        logger.warning("Great Expectations project file %s is unusable (%s): rewritten from GovLake's project "
                       "config; its content is kept in %s", path, reason, broken.name)
        fsio.atomic_write_bytes(broken, raw)
        write_project_file(gx_dir, _dump(project_config()))
    elif _govlake_settings(config):
        logger.info("Great Expectations project file %s brought to GovLake's settings (atomic store backends, "
                    "analytics and progress bars off)", path)
        write_project_file(gx_dir, _dump(config))


def open_context(gx_dir: Path) -> GovLakeFileDataContext:
    """The project's file data context (the project file created or repaired first, :func:`ensure_project`), also
    made GX's current context (``great_expectations.data_context.set_context``: checkpoints and validation
    definitions look their datasource and stores up there, as after ``gx.get_context``). Call it, and use the
    context, under ``govlake.quality.rules.gx_project_lock``."""
    from great_expectations.data_context import set_context

    gx_dir = Path(gx_dir).resolve()
    ensure_project(gx_dir)
    context = GovLakeFileDataContext(context_root_dir=str(gx_dir))
    set_context(context)
    return context
