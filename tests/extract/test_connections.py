"""A source's connection is resolved through Airflow's connection API (real Airflow, no servers needed).

A secrets backend is configured per process in Airflow, so those cases run `connection_uri` in a child Python
with the backend set by ``AIRFLOW__SECRETS__*`` (Airflow's own local-filesystem backend and a connections file).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from govlake.extract.registry import ObjectSpec, SourceSpec, SourceUnavailable, connection_uri

ROOT = Path(__file__).resolve().parents[2]
CHILD = """
import sys
from govlake.extract.registry import ObjectSpec, SourceSpec, connection_uri
obj = ObjectSpec(name="x", business_key=("k",), columns=("k",))
for conn_id in sys.argv[1:]:
    print("uri:", connection_uri(SourceSpec(source="dept", department="d", kind="sql", objects={"x": obj}, embedded="",
                                    connection_id=conn_id)))
"""


def _spec(conn_id: str) -> SourceSpec:
    obj = ObjectSpec(name="x", business_key=("k",), columns=("k",))
    return SourceSpec(source="dept", department="d", kind="sql", objects={"x": obj}, embedded="",
                      connection_id=conn_id)


def _resolve_in_child(tmp_path: Path, conns: dict, *conn_ids: str, env: dict[str, str] | None = None) -> list[str]:
    path = tmp_path / "connections.json"
    path.write_text(json.dumps(conns))
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
    child_env |= {"AIRFLOW_HOME": str(tmp_path / "airflow"), "PYTHONPATH": str(ROOT),
                  "AIRFLOW__SECRETS__BACKEND": "airflow.secrets.local_filesystem.LocalFilesystemBackend",
                  "AIRFLOW__SECRETS__BACKEND_KWARGS": json.dumps({"connections_file_path": str(path)}),
                  **(env or {})}
    out = subprocess.run([sys.executable, "-c", CHILD, *conn_ids], env=child_env, cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return [line[5:] for line in out.stdout.splitlines() if line.startswith("uri: ")]  # Airflow logs to stdout too


def test_a_secrets_backend_connection_is_read(tmp_path):
    conns = {"govlake_pg": {"conn_type": "postgres", "host": "10.1.2.3", "port": 6543, "login": "hukou_reader",
                            "password": "p@ss/word", "schema": "departments"},
             "govlake_mongo": {"conn_type": "mongo", "host": "10.1.2.4", "port": 27017, "schema": "n1_wangge"}}
    assert _resolve_in_child(tmp_path, conns, "govlake_pg", "govlake_mongo") == [
        "postgresql://hukou_reader:p%40ss%2Fword@10.1.2.3:6543/departments",
        "mongodb://10.1.2.4:27017/n1_wangge",
    ]


def test_the_secrets_backend_comes_before_the_variable(tmp_path):
    # Airflow's search order: the configured backend, then AIRFLOW_CONN_* variables, then the metadata database
    conns = {"govlake_pg": {"conn_type": "postgres", "host": "10.1.2.3", "port": 6543, "schema": "departments"}}
    assert _resolve_in_child(tmp_path, conns, "govlake_pg", "govlake_other", env={
        "AIRFLOW_CONN_GOVLAKE_PG": "postgresql://elsewhere:1/x",
        "AIRFLOW_CONN_GOVLAKE_OTHER": "postgresql://u@10.9.9.9:5432/other"}) == [
        "postgresql://10.1.2.3:6543/departments",
        "postgresql://u@10.9.9.9:5432/other",
    ]


def test_variables_in_both_of_airflows_formats(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_GOVLAKE_T_URI", "postgresql://govlake@127.0.0.1:55432/departments")
    monkeypatch.setenv("AIRFLOW_CONN_GOVLAKE_T_JSON", json.dumps({"conn_type": "mongo", "host": "127.0.0.1",
                                                                 "port": 27018}))
    assert connection_uri(_spec("govlake_t_uri")) == "postgresql://govlake@127.0.0.1:55432/departments"
    assert connection_uri(_spec("govlake_t_json")) == "mongodb://127.0.0.1:27018"


def test_an_undefined_connection_names_the_source_and_the_variable(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_GOVLAKE_T_NONE", raising=False)
    with pytest.raises(SourceUnavailable, match=r"^source dept: connection 'govlake_t_none' is not configured "
                                                r"\(no Airflow connection or secrets backend defines it, and "
                                                r"AIRFLOW_CONN_GOVLAKE_T_NONE is unset\)$"):
        connection_uri(_spec("govlake_t_none"))


def test_an_explicit_environment_is_read_alone(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_GOVLAKE_T_ENV", "postgresql://from-process:1/x")
    assert connection_uri(_spec("govlake_t_env"), {"AIRFLOW_CONN_GOVLAKE_T_ENV": "postgres://given:2/y"}) == \
        "postgresql://given:2/y"
    with pytest.raises(SourceUnavailable, match="AIRFLOW_CONN_GOVLAKE_T_ENV is unset"):
        connection_uri(_spec("govlake_t_env"), {})
