"""GovLake's own Spark SQL functions, written in Java (``govlake/codes/udf/*.java``) and registered in every session.

Why: GB 11643 citizen IDs are checked on every ID column of the raw and unified gates and normalised in unify.
As Spark SQL expressions (17 substrings cast to int for the ISO 7064 MOD 11-2 sum, ``try_to_date`` for the birth
date, regexes for the format and for float renderings) they were the largest single cost of both gates; a Java
loop costs a small fraction of that (figures in ``benchmarks/README.md``). The Python functions of
:mod:`govlake.codes.code_lists` stay the reference; ``tests/codes/test_code_lists.py`` checks that the Spark
functions agree with them on every case.

Functions (the names are SQL function names of the session):

================================  =====================================  =============================================
SQL function                      Java class                             Python reference
================================  =====================================  =============================================
``govlake_id_normalize(string)``  ``org.govlake.udf.Gb11643$Normalize``  :func:`govlake.codes.code_lists.normalize_id`
``govlake_id_error(string, s)``   ``org.govlake.udf.Gb11643$Error``      :func:`govlake.codes.code_lists.id_errors`
================================  =====================================  =============================================

The jar is built from the sources with the JDK's ``javac`` against PySpark's ``spark-sql-api`` jar, into the jar
cache (``.cache/jars/govlake-udf-<digest>.jar``, the digest over the sources and the Spark version, so an edited
source gives a new jar and the old one is removed). ``docker/setup.sh`` builds it; :func:`govlake.core.spark.get_spark`
builds it when missing (local runs) and registers the functions (:func:`register`). Under ``spark-submit`` the jar
comes with ``--jars`` like the Delta jars (README).

Command line: ``python -m govlake.codes.udf [JARS_DIR]`` builds the jar (if needed) and prints its path.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

#: The Java sources compiled into the jar.
SOURCE_DIR = Path(__file__).resolve().parent
#: SQL function name -> (Java class implementing ``UDF1``/``UDF2``, Spark SQL return type).
FUNCTIONS: dict[str, tuple[str, str]] = {
    "govlake_id_normalize": ("org.govlake.udf.Gb11643$Normalize", "string"),
    "govlake_id_error": ("org.govlake.udf.Gb11643$Error", "string"),
}
JAR_PREFIX = "govlake-udf-"


def _sources() -> list[Path]:
    return sorted(SOURCE_DIR.glob("*.java"))


def _spark_api_jar() -> Path:
    """PySpark's ``spark-sql-api`` jar (the ``UDF1``/``UDF2`` interfaces), the compile classpath."""
    import pyspark

    jars = sorted((Path(pyspark.__file__).parent / "jars").glob("spark-sql-api_*.jar"))
    if not jars:
        raise FileNotFoundError(f"no spark-sql-api jar in {Path(pyspark.__file__).parent / 'jars'}")
    return jars[-1]


def jar_name() -> str:
    """``govlake-udf-<16 hex>.jar``: SHA-256 over the Java sources (names and bytes) and the Spark API jar's name."""
    digest = hashlib.sha256(_spark_api_jar().name.encode())
    for src in _sources():
        digest.update(src.name.encode() + b"\0" + src.read_bytes())
    return f"{JAR_PREFIX}{digest.hexdigest()[:16]}.jar"


def build_jar(jars_dir: Path) -> Path:
    """Return the path of the current UDF jar in ``jars_dir``, compiling it first when it is missing.

    Compiles ``govlake/codes/udf/*.java`` with ``javac --release 17`` against the Spark API jar into a temporary folder,
    zips the classes, moves the jar into place atomically (concurrent callers, e.g. Airflow tasks, get the same
    file) and deletes older ``govlake-udf-*.jar`` files of ``jars_dir``.

    Raises:
        FileNotFoundError: no ``javac`` on PATH or under ``JAVA_HOME`` (install a JDK 17: ``docker/setup.sh``).
        subprocess.CalledProcessError: the sources do not compile (javac's messages on stderr).
    """
    jars_dir = Path(jars_dir)
    return compile_jar(jars_dir / jar_name(), _sources(), [_spark_api_jar()], JAR_PREFIX)


def compile_jar(target: Path, sources: list[Path], classpath: list[Path], prefix: str) -> Path:
    """Compile ``sources`` with ``javac --release 17`` against ``classpath`` into the jar ``target`` (skipped when
    it exists), atomically (concurrent callers get the same file); then delete the other ``<prefix>*.jar`` files of
    its folder (jars of older sources). Shared by :func:`build_jar` and the SQL endpoint's authenticator
    (:mod:`govlake.serve.sql_endpoint`).

    Raises:
        FileNotFoundError: no ``javac`` on PATH or under ``JAVA_HOME`` (install a JDK 17: ``docker/setup.sh``).
        subprocess.CalledProcessError: the sources do not compile (javac's messages on stderr).
    """
    if target.exists():
        return target
    jars_dir = target.parent
    javac = shutil.which("javac") or (str(Path(os.environ["JAVA_HOME"]) / "bin" / "javac")
                                      if os.environ.get("JAVA_HOME") else None)
    if not javac or not Path(javac).exists():
        raise FileNotFoundError("javac not found: GovLake's Java classes (govlake/codes/udf, govlake/serve) are "
                                "compiled with a JDK 17; run docker/setup.sh")
    jars_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=jars_dir, prefix=".build-") as tmp:
        classes = Path(tmp) / "classes"
        subprocess.run([javac, "--release", "17", "-nowarn", "-cp", os.pathsep.join(map(str, classpath)),
                        "-d", str(classes), *map(str, sources)], check=True)
        built = Path(tmp) / target.name
        with zipfile.ZipFile(built, "w", zipfile.ZIP_DEFLATED) as jar:
            jar.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\nCreated-By: govlake\n\n")
            for cls in sorted(classes.rglob("*.class")):
                jar.write(cls, cls.relative_to(classes).as_posix())
        os.replace(built, target)
    for old in jars_dir.glob(f"{prefix}*.jar"):
        if old.name != target.name:
            old.unlink(missing_ok=True)
    return target


def register(spark: SparkSession) -> None:
    """Register :data:`FUNCTIONS` in ``spark`` (idempotent).

    Raises:
        RuntimeError: the classes are not on the session's classpath (under ``spark-submit``: pass the jar of
            :func:`build_jar` with ``--jars``).
    """
    for name, (cls, return_type) in FUNCTIONS.items():
        try:
            spark.udf.registerJavaFunction(name, cls, return_type)
        except Exception as exc:  # py4j / AnalysisException: class not found
            raise RuntimeError(f"Spark function {name}: class {cls} not on the classpath; build the jar with "
                               f"`python -m govlake.codes.udf` and pass it to spark-submit with --jars "
                               f"({exc})") from exc


def main(argv: list[str] | None = None) -> int:
    from govlake.core.config import Settings

    argv = sys.argv[1:] if argv is None else argv
    jars_dir = Path(argv[0]) if argv else Settings.from_env().jars_dir
    print(build_jar(jars_dir))
    return 0
