"""Settings of a GovLake run, read from the environment with safe defaults.

Environment variables (all optional):

==============================  ==========================================================  =====================
variable                        meaning                                                     default
==============================  ==========================================================  =====================
``GOVLAKE_HOME``                root for runtime output (lakehouse, sources, reports)       ``<repo>/var``
``GOVLAKE_LAKEHOUSE``           root of the Delta tables (any Hadoop path: file:, s3a:)     ``$GOVLAKE_HOME/lakehouse``
``GOVLAKE_SPARK_MASTER``        Spark master URL                                            ``local[*]``
``GOVLAKE_SOURCES``             ``embedded`` (SQLite + JSON lines) or ``servers``           ``embedded``
                                (PostgreSQL + MongoDB through Airflow connection URIs)
``GOVLAKE_JARS``                folder of cached jars (Delta, JDBC)                          ``<repo>/.cache/jars``
``GOVLAKE_DATA_DOCS``           ``0``: no GX validation results / Data Docs (the row-level   ``1``
                                gate, quarantine and ``ops.validation_results`` still run)
``GOVLAKE_GX_ENGINE``           how GX validation results are computed: ``single-pass``       ``single-pass``
                                (from the gate's one-pass counts) or ``spark`` (GX's own
                                checkpoint); see :func:`govlake.quality.rules.gx_engine`
``GOVLAKE_VALIDATE_THREADS``    raw tables the validate stage validates at once; see        ``2``
                                :func:`govlake.quality.stage.validate_threads`
``GOVLAKE_EXTRACT_MODE``        ``incremental``, ``backfill`` or ``snapshot``                 ``incremental``
``GOVLAKE_LEASE_WAIT_S``        seconds a run waits for another run's lease (CLI: 0, refuse) ``0``
``GOVLAKE_LEASE_TTL_S``         a lease's time to live without renewal, seconds (>= 30)      ``600``
``GOVLAKE_RUN_ID``              the run several processes share (set by the Airflow tasks)   unset
``GOVLAKE_SPARK_TINY``          ``1``: Spark tuned for tiny data (tests)                     unset
``GOVLAKE_FAILPOINTS``          armed failpoints (fault-injection tests only)                unset
``GOVLAKE_DASHBOARD_PORT``      loopback port of the decision-support dashboard             ``8501``
                                (``python -m govlake.serve.dashboard``)
``GOVLAKE_PLATFORM_DIR``        pid files, logs and secrets of ``make up`` (platform.sh)    ``<home>/platform``
``GOVLAKE_REPORTS_PORT``        loopback port of the reports HTTP server                    ``8000``
``GOVLAKE_CJK_FONT``            TrueType/OpenType font with CJK glyphs, subset and embedded  Debian's
                                in the decision-support report (:mod:`govlake.analysis.fonts`) ``fonts-droid-fallback``
``GOVLAKE_METASTORE_URL``       PostgreSQL database of the persistent Hive metastore        unset (in-memory
                                (``postgresql://user@host:port/metastore`` or a             catalog: tables
                                ``jdbc:postgresql:`` URL); see :func:`metastore_url`        registered per session)
``GOVLAKE_SQL_PORT``            port of the SQL endpoint (govlake.serve.sql_endpoint)       ``10000``
``GOVLAKE_DATA_DOCS_BASE_URL``  URL of the reports folder for the Airflow Data Docs link     unset (file: URL)
                                (read by ``plugins/govlake_data_docs.py`` in the Airflow
                                webserver, which does not import this package)
==============================  ==========================================================  =====================

Every variable is read in this module: :class:`Settings` (where a run reads and writes) and one function per run
option below; ``tests/core/test_config.py`` fails when another module reads a ``GOVLAKE_*`` variable.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMAS_DIR = REPO_ROOT / "schemas"
EXPECTATIONS_DIR = REPO_ROOT / "expectations"
REFERENCE_DIR = SCHEMAS_DIR / "reference"

#: Business time zone of every department: business dates and logical dates are Asia/Shanghai.
TIME_ZONE = "Asia/Shanghai"
#: The bundled sample municipality: Shijiazhuang (石家庄市), GB/T 2260 code 130100.
SAMPLE_CITY_CODE = "130100"
#: The logical date the sample municipality's sources are generated for (demo default).
SAMPLE_LOGICAL_DATE = "2025-06-30"


@dataclass(frozen=True)
class Settings:
    """Where a run reads and writes, and how Spark runs.

    Attributes:
        home: root folder of runtime output.
        lakehouse: root of the Delta tables; a table ``<layer>.<name>`` lives at
            ``<lakehouse>/<layer>/<name>``.
        spark_master: Spark master URL (``local[*]`` or a cluster's).
        sources_mode: ``embedded`` or ``servers``.
        jars_dir: folder of the cached Delta and JDBC jars.
    """

    home: Path
    lakehouse: str
    spark_master: str = "local[*]"
    sources_mode: str = "embedded"
    jars_dir: Path = field(default_factory=lambda: REPO_ROOT / ".cache" / "jars")

    @property
    def sources_dir(self) -> Path:
        """Folder of the embedded sample sources (SQLite files, JSON lines, file drops)."""
        return self.home / "sources"

    @property
    def reports_dir(self) -> Path:
        """Folder of reports: validation results, Data Docs, run summaries."""
        return self.home / "reports"

    def table_path(self, layer: str, name: str) -> str:
        """Storage path of the Delta table ``layer.name``."""
        return f"{self.lakehouse.rstrip('/')}/{layer}/{name}"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        """Build settings from ``env`` (default ``os.environ``).

        Raises:
            ValueError: ``GOVLAKE_SOURCES`` is neither ``embedded`` nor ``servers``.
        """
        env = dict(os.environ if env is None else env)
        home = Path(env.get("GOVLAKE_HOME", REPO_ROOT / "var")).resolve()
        mode = env.get("GOVLAKE_SOURCES", "embedded")
        if mode not in ("embedded", "servers"):
            raise ValueError(f"GOVLAKE_SOURCES must be 'embedded' or 'servers', not {mode!r}")
        return cls(
            home=home,
            lakehouse=env.get("GOVLAKE_LAKEHOUSE", str(home / "lakehouse")),
            spark_master=env.get("GOVLAKE_SPARK_MASTER", "local[*]"),
            sources_mode=mode,
            jars_dir=Path(env.get("GOVLAKE_JARS", REPO_ROOT / ".cache" / "jars")),
        )


# --- run options: every other GOVLAKE_* variable, parsed and checked here -------------------------------------

#: ``GOVLAKE_EXTRACT_MODE``: incremental (the logical date's window), backfill (everything before the window end) or
#: snapshot (the whole source as of the window end, every run).
EXTRACT_MODES = ("incremental", "backfill", "snapshot")
#: ``GOVLAKE_GX_ENGINE``: how the Great Expectations validation result of a batch is computed.
GX_ENGINES = ("single-pass", "spark")
#: ``GOVLAKE_FAILPOINTS``: armed failpoints of the fault-injection tests (govlake.core.failpoints).
FAILPOINTS_VAR = "GOVLAKE_FAILPOINTS"


def _env(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if env is None else env


def extract_mode(env: Mapping[str, str] | None = None) -> str:
    """``GOVLAKE_EXTRACT_MODE`` (default ``incremental``).

    Raises:
        ValueError: not one of :data:`EXTRACT_MODES`.
    """
    mode = _env(env).get("GOVLAKE_EXTRACT_MODE", "incremental")
    if mode not in EXTRACT_MODES:
        raise ValueError(f"GOVLAKE_EXTRACT_MODE must be incremental, backfill or snapshot, not {mode!r}")
    return mode


def data_docs(env: Mapping[str, str] | None = None) -> bool:
    """``GOVLAKE_DATA_DOCS`` (default on; ``0`` turns the GX checkpoints and Data Docs off)."""
    return _env(env).get("GOVLAKE_DATA_DOCS", "1") != "0"


def gx_engine(env: Mapping[str, str] | None = None) -> str:
    """``GOVLAKE_GX_ENGINE`` (default ``single-pass``): ``single-pass`` stores the GX validation result built from
    the gate's one-pass counts; ``spark`` runs GX's own checkpoint on the batch (the second opinion).

    Raises:
        ValueError: not one of :data:`GX_ENGINES`.
    """
    value = _env(env).get("GOVLAKE_GX_ENGINE", "single-pass")
    if value not in GX_ENGINES:
        raise ValueError(f"GOVLAKE_GX_ENGINE must be one of {', '.join(GX_ENGINES)}, not {value!r}")
    return value


def validate_threads(env: Mapping[str, str] | None = None) -> int:
    """``GOVLAKE_VALIDATE_THREADS``: raw tables validated at once (default 2).

    Raises:
        ValueError: not a positive integer.
    """
    value = _env(env).get("GOVLAKE_VALIDATE_THREADS", "2")
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"GOVLAKE_VALIDATE_THREADS must be a positive integer, not {value!r}")
    return int(value)


def lease_seconds(env: Mapping[str, str] | None = None, wait_default: str = "0") -> tuple[float, float]:
    """``(wait_s, ttl_s)`` from ``GOVLAKE_LEASE_WAIT_S`` (default ``wait_default``) and ``GOVLAKE_LEASE_TTL_S``
    (default 600): how long a run waits for a held lease, and a lease's time to live without renewal (seconds).

    Raises:
        ValueError: a value is not a non-negative number (TTL: at least 30 s).
    """
    out = []
    for name, default, minimum in (("GOVLAKE_LEASE_WAIT_S", wait_default, 0.0),
                                   ("GOVLAKE_LEASE_TTL_S", "600", 30.0)):
        text = _env(env).get(name, default)
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{name} must be a number of seconds, not {text!r}") from None
        if value < minimum:
            raise ValueError(f"{name} must be at least {minimum:g} seconds, not {text!r}")
        out.append(value)
    return out[0], out[1]


def run_id(env: Mapping[str, str] | None = None) -> str | None:
    """``GOVLAKE_RUN_ID``: the run several processes share (an Airflow DAG run); None for a one-process run."""
    return _env(env).get("GOVLAKE_RUN_ID") or None


def spark_tiny(env: Mapping[str, str] | None = None) -> bool:
    """``GOVLAKE_SPARK_TINY=1``: Spark settings for tiny data (tests, one shuffle partition, no UI)."""
    return _env(env).get("GOVLAKE_SPARK_TINY") == "1"


def failpoints_spec(env: Mapping[str, str] | None = None) -> str | None:
    """``GOVLAKE_FAILPOINTS``: the armed failpoints (None: none)."""
    return _env(env).get(FAILPOINTS_VAR)


def tcp_port(var: str, default: int, env: Mapping[str, str] | None = None) -> int:
    """A ``GOVLAKE_*_PORT`` variable: a TCP port a GovLake server binds on 127.0.0.1 (``default`` when unset).

    Raises:
        ValueError: not an integer in 1–65535 (the message names the variable).
    """
    value = _env(env).get(var, str(default))
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        raise ValueError(f"{var} must be a TCP port (1-65535), not {value!r}")
    return int(value)


def dashboard_port(env: Mapping[str, str] | None = None) -> int:
    """``GOVLAKE_DASHBOARD_PORT``: the TCP port the dashboard binds on 127.0.0.1 (default 8501, Streamlit's).

    Raises:
        ValueError: not an integer in 1–65535.
    """
    return tcp_port("GOVLAKE_DASHBOARD_PORT", 8501, env)


def platform_dir(env: Mapping[str, str] | None = None) -> Path:
    """``GOVLAKE_PLATFORM_DIR``: folder of the platform's pid files, logs and secrets (default
    ``$GOVLAKE_HOME/platform``)."""
    value = _env(env).get("GOVLAKE_PLATFORM_DIR")
    if value:
        return Path(value)
    return Settings.from_env(dict(_env(env))).home / "platform"


#: Debian's ``fonts-droid-fallback`` (installed by docker/setup.sh): Droid Sans Fallback, CJK glyphs, Apache-2.0.
DEFAULT_CJK_FONT = Path("/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf")


def cjk_font_path(env: Mapping[str, str] | None = None) -> Path:
    """``GOVLAKE_CJK_FONT``: the font file whose subset the report embeds (default :data:`DEFAULT_CJK_FONT`).
    Existence is checked by the reader (:func:`govlake.analysis.fonts.load_cjk_font`)."""
    value = _env(env).get("GOVLAKE_CJK_FONT")
    return Path(value) if value else DEFAULT_CJK_FONT


def metastore_url(env: Mapping[str, str] | None = None) -> str | None:
    """``GOVLAKE_METASTORE_URL``: the PostgreSQL database of the persistent Hive metastore (None: Spark's in-memory
    catalog, every session registers the tables itself). Parsed by :func:`govlake.core.spark.metastore_jdbc`.

    Raises:
        ValueError: not a ``postgresql://`` (or ``postgresql+driver://``) or ``jdbc:postgresql://`` URL.
    """
    value = _env(env).get("GOVLAKE_METASTORE_URL") or None
    if value is not None and not (value.startswith(("postgresql://", "postgresql+", "jdbc:postgresql://"))):
        raise ValueError("GOVLAKE_METASTORE_URL must be a postgresql://user@host:port/database or "
                         f"jdbc:postgresql:// URL, not {value.split('@')[-1]!r}")
    return value


def sql_port(env: Mapping[str, str] | None = None) -> int:
    """``GOVLAKE_SQL_PORT``: TCP port of the SQL endpoint on 127.0.0.1 (default 10000, HiveServer2's).

    Raises:
        ValueError: not an integer in 1..65535.
    """
    text = _env(env).get("GOVLAKE_SQL_PORT", "10000")
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"GOVLAKE_SQL_PORT must be a TCP port (1..65535), not {text!r}")
    return int(text)
