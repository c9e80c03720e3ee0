"""GovLake's function jar (govlake/codes/udf): built from the Java sources, named by their digest, stale jars
removed."""
from govlake.codes import udf


def test_build_jar_is_named_by_the_sources_and_replaces_stale_jars(tmp_path):
    stale = tmp_path / "govlake-udf-0000000000000000.jar"
    stale.write_bytes(b"old")
    other = tmp_path / "delta-spark_4.1_2.13-4.4.0.jar"
    other.write_bytes(b"not ours")

    jar = udf.build_jar(tmp_path)

    assert jar == tmp_path / udf.jar_name()
    assert jar.name.startswith("govlake-udf-") and len(jar.name) == len("govlake-udf-") + 16 + len(".jar")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([jar.name, other.name])
    import zipfile

    names = set(zipfile.ZipFile(jar).namelist())
    assert {"org/govlake/udf/Gb11643.class", "org/govlake/udf/Gb11643$Normalize.class",
            "org/govlake/udf/Gb11643$Error.class"} <= names
    mtime = jar.stat().st_mtime_ns
    assert udf.build_jar(tmp_path) == jar and jar.stat().st_mtime_ns == mtime  # built once


def test_session_has_the_functions(spark):
    got = spark.sql("SELECT govlake_id_normalize(' 11010519491231002x') AS n, "
                    "govlake_id_error('11010519491231007X', '20261231') AS e").collect()
    assert [tuple(r) for r in got] == [("11010519491231002X", "checksum")]
