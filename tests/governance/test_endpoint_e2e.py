"""Governance enforced at the SQL endpoint, end to end on the real PostgreSQL metastore and Thrift server: the same
``SELECT id_no, name, phone FROM unified.person`` gives a district official masked rows of the district, a city
analyst every row masked, a steward clear values; a conditional resource is refused without a grant, readable after
approval, refused after revocation; a not-shared one is refused; every statement is audited."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import date, timedelta

import pytest

from govlake.core.config import Settings
from govlake.governance import access, requests
from govlake.serve import sql_endpoint as ep
from tests.serve.test_sql_endpoint_e2e import _free_port, metastore  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow

#: unified.person rows: (person_id, id_no, name, phone, district_code) — two in 长安区, one each in 桥西区 and 新华区
PERSONS = [
    ("P1", "130102198803150023", "张伟", "13812341234", "130102"),
    ("P2", "13010219920708451X", "欧阳娜娜", "13998765432", "130102"),
    ("P3", "130104197512300016", "李强", "15001112222", "130104"),
    ("P4", "130105200101010027", "王芳", "18633334444", "130105"),
]

SETUP = textwrap.dedent("""
    import json, sys
    from govlake.core.config import Settings
    from govlake.core.spark import get_spark
    from govlake.governance.access import load_governance, publish_share_views
    settings = Settings.from_env()
    gov = load_governance()
    spark = get_spark(settings, app_name="governance-e2e", tiny=True)
    persons = json.loads(sys.argv[1])
    for table in sys.argv[2:]:
        layer, name = table.split(".", 1)
        columns = gov.columns[table]
        # a contract may state a bare STRUCT/ARRAY (its fields are the writer's): a string stands in here
        schema = ", ".join(f"`{c}` {'STRING' if t.upper() in ('STRUCT', 'ARRAY', 'MAP') else t}" for c, t in columns)
        rows = []
        if table == "unified.person":
            keys = ["person_id", "id_no", "name", "phone", "district_code"]
            rows = [tuple(dict(zip(keys, p)).get(c) for c, _ in columns) for p in persons]
        path = settings.table_path(layer, name)
        spark.createDataFrame(rows, schema).write.format("delta").mode("overwrite").save(path)
        spark.sql(f"CREATE DATABASE IF NOT EXISTS {layer}")
        if layer == "unified":  # as the pipeline registers a published layer: a view pinned at a Delta version
            spark.sql(f"CREATE VIEW {table} AS SELECT * FROM delta.`{path}` VERSION AS OF 0")
        else:
            spark.sql(f"CREATE TABLE IF NOT EXISTS {table} USING delta LOCATION '{path}'")
    made = publish_share_views(spark, settings, gov)
    print("VIEWS", len(made), "AGAIN", len(publish_share_views(spark, settings, gov)))
    spark.stop()
""")


def _query(port, settings, user, sql):
    from pyhive import hive

    password = ep.password_file(settings, user).read_text(encoding="utf-8").strip()
    cursor = hive.connect(host="127.0.0.1", port=port, database="marts", username=user, password=password,
                          auth="CUSTOM").cursor()
    cursor.execute(sql)
    return cursor.fetchall()


def _refused(port, settings, user, sql) -> str:
    from pyhive.exc import OperationalError

    with pytest.raises(OperationalError) as info:
        _query(port, settings, user, sql)
    message = str(info.value)
    start = message.find("GovLake access denied")
    assert start >= 0, message[:2000]
    return message[start:message.find("'", start)].split(":31:")[0]


def test_roles_grants_and_audit_at_the_endpoint(tmp_path, metastore):  # noqa: F811
    port = _free_port()
    env = {**os.environ, "GOVLAKE_HOME": str(tmp_path), "GOVLAKE_METASTORE_URL": metastore,
           "GOVLAKE_SQL_PORT": str(port), "GOVLAKE_SPARK_TINY": "1"}
    settings = Settings.from_env(env)
    gov = access.load_governance()
    not_shared = sorted(t for t, r in gov.resources.items() if r.sharing_type == "not_shared"
                        and t.startswith("raw."))[0]
    import json

    done = subprocess.run([sys.executable, "-c", SETUP, json.dumps(PERSONS), "unified.person",
                           "marts.population_density", not_shared], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    views = [line for line in done.stdout.splitlines() if line.startswith("VIEWS")]
    assert views and views[0].endswith("AGAIN 0"), done.stdout  # a second publication changes nothing

    started = subprocess.run([sys.executable, "-m", "govlake.serve.sql_endpoint", "start"], env=env,
                             capture_output=True, text=True, timeout=400)
    sql = "SELECT id_no, name, phone FROM unified.person ORDER BY id_no"
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        # a steward reads clear values; nobody else without an approved request
        assert _query(port, settings, "steward", sql) == [(p[1], p[2], p[3]) for p in sorted(PERSONS,
                                                                                            key=lambda p: p[1])]
        assert _refused(port, settings, "changan", sql) == (
            "GovLake access denied: user changan (role district_official) may not read unified.person: "
            "unified.person is 有条件共享 (conditional): needs an approved data request (python -m govlake.governance "
            "request --user changan --resource unified.person --purpose ...)")

        ctx = requests.Context(gov.principals, {t: (r.sharing_type, r.provider) for t, r in gov.resources.items()})
        grants = {}
        for user in ("changan", "analyst"):
            req = requests.submit(settings, ctx, user, "unified.person", "低保复核", "核对申请人户籍与联系方式",
                                  date.today(), date.today() + timedelta(days=30))
            grants[user] = requests.decide(settings, req["request_id"], "steward", True, "")["grant_id"]
        access.write_access_file(settings, gov)

        assert _query(port, settings, "changan", sql) == [
            ("130102********0023", "张*", "138****1234"), ("130102********451X", "欧***", "139****5432")]
        assert _query(port, settings, "analyst", sql) == [
            ("130102********0023", "张*", "138****1234"), ("130102********451X", "欧***", "139****5432"),
            ("130104********0016", "李*", "150****2222"), ("130105********0027", "王*", "186****4444")]
        assert _query(port, settings, "changan", "SELECT count(*) FROM marts.population_density") == [(0,)]
        assert _refused(port, settings, "changan", "SELECT id_no FROM spark_catalog.unified.person") == (
            "GovLake access denied: user changan (role district_official) reads tables by their governed name "
            "(e.g. unified.person), routed to its share database share_district_130102; the direct read of "
            "unified.person is for data stewards")
        person_dir = settings.table_path("unified", "person")
        assert _refused(port, settings, "changan", f"SELECT id_no FROM delta.`{person_dir}`") == (
            "GovLake access denied: user changan (role district_official) reads tables by their governed name "
            f"(e.g. unified.person); reading files (delta.{person_dir}) is for data stewards")
        assert _refused(port, settings, "analyst", f"SELECT * FROM {not_shared}").startswith(
            f"GovLake access denied: user analyst (role city_analyst) may not read {not_shared}: {not_shared} is "
            "不予共享 (not_shared): never readable outside its provider department")
        with pytest.raises(requests.RequestError, match=f"request for {not_shared}: it is 不予共享"):
            requests.submit(settings, ctx, "analyst", not_shared, "x", "y", date.today(), date.today())

        requests.revoke(settings, grants["changan"], "steward", "case closed")
        access.write_access_file(settings, gov)
        assert "was revoked at" in _refused(port, settings, "changan", sql)
        assert len(_query(port, settings, "analyst", sql)) == 4  # the other grant still holds
    finally:
        subprocess.run([sys.executable, "-m", "govlake.serve.sql_endpoint", "stop"], env=env, timeout=120)

    audit = [r for r in access.read_audit(settings) if r["statement"] == sql]
    assert [(r["user"], r["decision"], r["resources"]) for r in audit] == [
        ("steward", "allowed", []), ("changan", "refused", []), ("changan", "allowed", ["unified.person"]),
        ("analyst", "allowed", ["unified.person"]), ("changan", "refused", []),
        ("analyst", "allowed", ["unified.person"])]
    assert audit[2]["grants"] == [f"{grants['changan']}: purpose: 低保复核"]
    events = requests.read_table(settings, "grant_events")
    assert sorted(e["action"] for e in events) == ["approve", "approve", "request", "request", "review", "review",
                                                   "revoke"]
