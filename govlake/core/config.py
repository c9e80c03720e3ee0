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
==============================  ==========================================================  =====================
"""
from __future__ import annotations

import os
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
