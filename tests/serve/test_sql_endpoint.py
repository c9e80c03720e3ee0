"""The SQL endpoint's pieces that need no Spark: metastore URL parsing, users file, the Java authenticator, ports.

The end-to-end test (endpoint + metastore + PyHive + spark-sql) is tests/serve/test_sql_endpoint_e2e.py.
"""
from __future__ import annotations

import socket
import stat
import subprocess

import pytest

from govlake.core import config
from govlake.core.config import Settings
from govlake.core.spark import metastore_jdbc
from govlake.serve import sql_endpoint as ep


def test_metastore_url_forms_give_the_same_jdbc_parts():
    expected = {"jdbc_url": "jdbc:postgresql://127.0.0.1:55520/metastore", "user": "govlake", "password": "s3cr:t",
                "host": "127.0.0.1", "port": "55520", "database": "metastore"}
    assert metastore_jdbc("postgresql://govlake:s3cr%3At@127.0.0.1:55520/metastore") == expected
    assert metastore_jdbc("postgresql+psycopg://govlake:s3cr%3At@127.0.0.1:55520/metastore") == expected
    assert metastore_jdbc("jdbc:postgresql://127.0.0.1:55520/metastore?user=govlake&password=s3cr%3At") == expected


def test_metastore_and_port_variables_are_checked():
    assert config.metastore_url({}) is None
    assert config.sql_port({}) == 10000
    assert config.sql_port({"GOVLAKE_SQL_PORT": "21000"}) == 21000
    with pytest.raises(ValueError, match="GOVLAKE_METASTORE_URL must be"):
        config.metastore_url({"GOVLAKE_METASTORE_URL": "mysql://u@h/db"})
    with pytest.raises(ValueError, match="GOVLAKE_SQL_PORT must be a TCP port"):
        config.sql_port({"GOVLAKE_SQL_PORT": "70000"})


def test_init_writes_private_files_once_and_the_hash_checks(tmp_path):
    settings = Settings.from_env({"GOVLAKE_HOME": str(tmp_path)})
    password = ep.init(settings)
    assert password is not None and len(password) == 24
    assert ep.init(settings) is None  # the users file exists: nothing printed, nothing changed
    for path in (ep.users_file(settings), ep.password_file(settings)):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ep.password_file(settings).read_text().strip() == password
    user, stored = ep.users_file(settings).read_text().strip().split(":", 1)
    assert user == "analyst" and password not in stored
    assert ep.check_password(password, stored) and not ep.check_password(password + "x", stored)


@pytest.mark.parametrize("user, typed, answer", [
    ("analyst", "right-one", "ok"),
    ("analyst", "wrong-one", "refused: invalid user or password"),
    ("nobody", "right-one", "refused: invalid user or password"),
])
def test_the_java_authenticator_accepts_exactly_the_stored_password(tmp_path, user, typed, answer):
    settings = Settings.from_env({"GOVLAKE_HOME": str(tmp_path)})
    ep.set_password(settings, "analyst", "right-one")
    jar = ep.build_auth_jar(settings.jars_dir)
    server_jar = sorted((ep.spark_home() / "jars").glob("spark-hive-thriftserver_*.jar"))[-1]
    done = subprocess.run(["java", f"-Dgovlake.sql.users={ep.users_file(settings)}", "-cp", f"{jar}:{server_jar}",
                           ep.AUTH_CLASS, user], input=typed, capture_output=True, text=True, check=False)
    assert done.stdout.strip() == answer


def test_start_refuses_a_port_another_program_owns(tmp_path):
    settings = Settings.from_env({"GOVLAKE_HOME": str(tmp_path)})
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        with pytest.raises(RuntimeError, match=f"port 127.0.0.1:{port} is in use by another program"):
            ep.start(settings, port, "postgresql://govlake@127.0.0.1:1/metastore")
    with pytest.raises(RuntimeError, match="GOVLAKE_METASTORE_URL is unset"):
        ep.start(settings, port, None)


def test_the_metastore_lock_is_held_by_one_process_at_a_time(pg_url):
    import psycopg

    from govlake.core.spark import ensure_metastore_database, metastore_lock

    url = pg_url.replace("/departments", "/metastore_locktest")
    # held: another process (a second connection) waits for it, here for at most one second
    with metastore_lock(url), pytest.raises(psycopg.errors.LockNotAvailable), metastore_lock(url, timeout_s=1):
        pass
    with metastore_lock(url, timeout_s=1):  # released on exit
        assert ensure_metastore_database(url) in (True, False)
        assert ensure_metastore_database(url) is False  # exists now


def test_a_database_created_since_the_check_is_not_an_error(pg_url, monkeypatch):
    import psycopg

    from govlake.core.spark import ensure_metastore_database

    url = pg_url.replace("/departments", "/metastore_racetest")
    ensure_metastore_database(url)
    real_execute = psycopg.Connection.execute

    def check_says_absent(self, query, params=None, **kw):  # the other process creates it between check and CREATE
        cur = real_execute(self, query, params, **kw)
        return real_execute(self, "SELECT 1 WHERE false") if "pg_database" in str(query) else cur

    monkeypatch.setattr(psycopg.Connection, "execute", check_says_absent)
    assert ensure_metastore_database(url) is False
