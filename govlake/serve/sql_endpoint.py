"""The SQL endpoint: Spark's Thrift JDBC/ODBC server (HiveServer2 protocol) over the lakehouse's persistent catalog.

Analysts and BI tools (beeline, DBeaver, Superset, PyHive) connect to ``jdbc:hive2://127.0.0.1:10000/marts`` and query
every table by name (``marts.<table>``, ``unified.<table>``, ...): the pipeline registers each table in the Hive
metastore (PostgreSQL, ``GOVLAKE_METASTORE_URL``) when it writes it (:func:`govlake.core.lake.register_new_tables`),
so the warm server answers without registering anything.

Command line::

    python -m govlake.serve.sql_endpoint init [--reset]   # users file with user `analyst`, password printed once
    python -m govlake.serve.sql_endpoint start            # init when needed, then the server in the background
    python -m govlake.serve.sql_endpoint stop | status
    python -m govlake.serve.sql_endpoint spark-sql [ARGS]  # pyspark's spark-sql on the same catalog

Files (under ``$GOVLAKE_HOME/sql-endpoint``, mode 600): ``users`` (``name:pbkdf2_sha256$...`` hashes, read by the
Java authenticator ``govlake/serve/auth/PasswordFileAuthenticator.java`` on every login), ``analyst.password`` (the
generated password, for its owner), ``spark.properties`` (the server's Spark properties, including the metastore's
database password when it has one: passed with ``--properties-file``, never on a command line), ``server.pid``,
``server.log``.

The server is ``org.apache.spark.sql.hive.thriftserver.HiveThriftServer2`` from the pyspark wheel (``spark-submit
--class … spark-internal``; the wheel has no ``sbin/start-thriftserver.sh``), bound to 127.0.0.1
(``hive.server2.thrift.bind.host``), port ``GOVLAKE_SQL_PORT`` (default 10000), binary transport, SASL PLAIN with
``hive.server2.authentication=CUSTOM``: no anonymous access.
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import hmac
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from govlake.core import config, fsio
from govlake.core.config import TIME_ZONE, Settings
from govlake.core.spark import cached_jars, ensure_metastore_database, metastore_conf

#: The user ``init`` creates.
DEFAULT_USER = "analyst"
#: Java authenticator (HiveServer2 ``PasswdAuthenticationProvider``) and its jar in the jar cache.
AUTH_CLASS = "org.govlake.auth.PasswordFileAuthenticator"
#: The authorization extension (routing to share views, checks, audit): ``govlake.governance.access``.
AUTHZ_EXTENSION = "org.govlake.auth.GovLakeAuthzExtension"
AUTH_SOURCES = Path(__file__).resolve().parent / "auth"
AUTH_JAR_PREFIX = "govlake-auth-"
SERVER_CLASS = "org.apache.spark.sql.hive.thriftserver.HiveThriftServer2"
#: PBKDF2-HMAC-SHA256 iterations (OWASP Password Storage Cheat Sheet, 2023: 600 000 for PBKDF2-HMAC-SHA256).
PBKDF2_ITERATIONS = 600_000
BIND_HOST = "127.0.0.1"


def state_dir(settings: Settings) -> Path:
    """``$GOVLAKE_HOME/sql-endpoint``: the endpoint's users file, password, properties, pid and log."""
    return settings.home / "sql-endpoint"


def users_file(settings: Settings) -> Path:
    """The users file the authenticator reads (one ``name:hash`` line per user, see :func:`hash_password`)."""
    return state_dir(settings) / "users"


def password_file(settings: Settings, user: str = DEFAULT_USER) -> Path:
    """Where ``init`` keeps the generated password of ``user`` (mode 600), for its owner and beeline's ``-w``."""
    return state_dir(settings) / f"{user}.password"


def jdbc_url(port: int, database: str = "marts") -> str:
    """``jdbc:hive2://127.0.0.1:<port>/<database>``: the URL for beeline, DBeaver, Superset (``hive://``)."""
    return f"jdbc:hive2://{BIND_HOST}:{port}/{database}"


# --- users ------------------------------------------------------------------------------------------------------

def hash_password(password: str, iterations: int = PBKDF2_ITERATIONS, salt: bytes | None = None) -> str:
    """``pbkdf2_sha256$<iterations>$<salt base64>$<hash base64>``: PBKDF2-HMAC-SHA256 (RFC 8018) of ``password`` with
    a random 16-byte salt and a 32-byte key; the format the Java authenticator checks."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    key = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations, dklen=32)
    return f"pbkdf2_sha256${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(key).decode()}"


def check_password(password: str, stored: str) -> bool:
    """True when ``password`` matches ``stored`` (:func:`hash_password`'s format); constant-time comparison."""
    parts = stored.split("$")
    if len(parts) != 4 or parts[0] != "pbkdf2_sha256":
        return False
    salt, expected = base64.b64decode(parts[2]), base64.b64decode(parts[3])
    key = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, int(parts[1]), dklen=len(expected))
    return hmac.compare_digest(key, expected)


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` created with mode 600 (never readable by others, not even briefly)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def set_password(settings: Settings, user: str, password: str) -> None:
    """Add ``user`` to the users file or replace its hash (file mode 600).

    Raises:
        ValueError: ``user`` is empty or holds ``:`` or whitespace.
    """
    if not user or any(c in user for c in ": \t\n"):
        raise ValueError(f"invalid user name {user!r}")
    path = users_file(settings)
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    lines = [line for line in lines if line.split(":", 1)[0] != user]
    _write_private(path, "\n".join([*lines, f"{user}:{hash_password(password)}"]) + "\n")


def init(settings: Settings, reset: bool = False) -> str | None:
    """Create the users file with user ``analyst`` and a generated password (24 URL-safe random characters),
    also kept in :func:`password_file` (mode 600). Nothing is done when the users file exists, unless ``reset``
    (a new password for ``analyst``).

    Returns:
        the new password (to print once), or None when the users file existed.
    """
    if users_file(settings).exists() and not reset:
        return None
    password = secrets.token_urlsafe(18)
    set_password(settings, DEFAULT_USER, password)
    _write_private(password_file(settings), password + "\n")
    return password


def init_principals(settings: Settings) -> list[str]:
    """Give every user of ``schemas/governance/principals.yaml`` without a password one (24 URL-safe random
    characters, in the users file and in ``<user>.password``, mode 600); returns the users created."""
    from govlake.governance.policy import load_principals

    path = users_file(settings)
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    known = {line.split(":", 1)[0] for line in lines}
    made = []
    for name in sorted(load_principals()):
        if name not in known:
            password = secrets.token_urlsafe(18)
            set_password(settings, name, password)
            _write_private(password_file(settings, name), password + "\n")
            made.append(name)
    return made


# --- the server -------------------------------------------------------------------------------------------------

def spark_home() -> Path:
    """The pyspark wheel's folder (``bin/spark-submit``, ``bin/spark-sql``, ``bin/beeline``, ``jars/``)."""
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def build_auth_jar(jars_dir: Path) -> Path:
    """The authenticator's jar in ``jars_dir`` (``govlake-auth-<digest>.jar``), compiled with ``javac`` against the
    wheel's ``spark-hive-thriftserver`` jar when missing (:func:`govlake.codes.udf.compile_jar`).

    Raises:
        FileNotFoundError: the wheel ships no ``spark-hive-thriftserver_*.jar``, or no ``javac``.
    """
    from govlake.codes.udf import compile_jar

    server_jars = sorted((spark_home() / "jars").glob("spark-hive-thriftserver_*.jar"))
    if not server_jars:
        raise FileNotFoundError(f"no spark-hive-thriftserver jar in {spark_home() / 'jars'}: this pyspark cannot "
                                "run the SQL endpoint")
    sources = sorted(AUTH_SOURCES.glob("*.java"))
    digest = hashlib.sha256(server_jars[-1].name.encode())
    for src in sources:
        digest.update(src.name.encode() + b"\0" + src.read_bytes())
    target = Path(jars_dir) / f"{AUTH_JAR_PREFIX}{digest.hexdigest()[:16]}.jar"
    # the authenticator needs the thrift server's jar; the authorization extension, Spark SQL's and Scala's
    return compile_jar(target, sources, sorted((spark_home() / "jars").glob("*.jar")), AUTH_JAR_PREFIX)


def server_properties(settings: Settings, metastore: str, port: int) -> dict[str, str]:
    """Spark properties of the endpoint (and of ``spark-sql`` on the same catalog): Delta's SQL extension and catalog,
    the session time zone, the metastore (:func:`govlake.core.spark.metastore_conf`), the cached jars plus the
    authenticator's on the driver class path, and HiveServer2's bind address, port and CUSTOM authentication."""
    jars = [*cached_jars(settings.jars_dir), str(build_auth_jar(settings.jars_dir))]
    conf = metastore_conf(metastore, settings)
    from govlake.governance.access import access_file, audit_file

    users = users_file(settings)
    conf.update({
        "spark.master": settings.spark_master,
        "spark.app.name": "govlake-sql-endpoint",
        "spark.sql.extensions": f"io.delta.sql.DeltaSparkSessionExtension,{AUTHZ_EXTENSION}",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.sql.session.timeZone": TIME_ZONE,
        "spark.sql.shuffle.partitions": "4",
        "spark.databricks.delta.snapshotPartitions": "2",
        "spark.sql.ansi.enabled": "false",
        "spark.driver.memory": "2g",
        "spark.driver.bindAddress": BIND_HOST,
        "spark.driver.host": BIND_HOST,
        "spark.ui.enabled": "false",
        # the class path of the driver JVM itself: Delta, the JDBC driver (DataNucleus) and the authenticator, which
        # HiveServer2 loads by name from its own class loader
        "spark.driver.extraClassPath": os.pathsep.join(jars),
        # HiveServer2's authenticator builds a fresh HiveConf, which reads system properties: the class and the
        # users file go there (no secret among them)
        "spark.driver.extraJavaOptions": (f"-Duser.timezone={TIME_ZONE} -Dgovlake.sql.users={users} "
                                          f"-Dgovlake.sql.access={access_file(settings)} "
                                          f"-Dgovlake.sql.audit={audit_file(settings)} "
                                          f"-Dhive.server2.authentication=CUSTOM "
                                          f"-Dhive.server2.custom.authentication.class={AUTH_CLASS}"),
        "spark.hadoop.hive.server2.thrift.bind.host": BIND_HOST,
        "spark.hadoop.hive.server2.thrift.port": str(port),
        "spark.hadoop.hive.server2.transport.mode": "binary",
        "spark.hadoop.hive.server2.authentication": "CUSTOM",
        "spark.hadoop.hive.server2.custom.authentication.class": AUTH_CLASS,
        "spark.hadoop.hive.server2.enable.doAs": "false",
    })
    return conf


def write_properties(settings: Settings, conf: dict[str, str]) -> Path:
    """Write ``conf`` as a Spark properties file (mode 600: it may hold the metastore's password); returns its path."""
    def escape(value: str) -> str:
        return value.replace("\\", "\\\\").replace("\n", "\\n")

    path = state_dir(settings) / "spark.properties"
    _write_private(path, "".join(f"{k}={escape(v)}\n" for k, v in sorted(conf.items())))
    return path


def _pid(settings: Settings) -> int | None:
    """The server's process id when its pid file names a live process, else None."""
    path = state_dir(settings) / "server.pid"
    try:
        pid = int(path.read_text().strip())
        os.kill(pid, 0)
        return pid
    except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
        return None


def port_in_use(port: int, host: str = BIND_HOST) -> bool:
    """True when ``host:port`` cannot be bound (another program, or our server, listens there); connections of a
    stopped server left in TIME_WAIT do not count (``SO_REUSEADDR``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def _accepts(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        return sock.connect_ex((BIND_HOST, port)) == 0


def start(settings: Settings, port: int, metastore: str | None, timeout_s: float = 300) -> int:
    """Start the endpoint in the background (``init`` first when there is no users file) and wait until it accepts
    connections on ``127.0.0.1:port``; a running endpoint of this GovLake home is left as it is.

    Returns:
        the server's process id (``spark-submit``'s JVM, leader of its own process group).

    Raises:
        RuntimeError: no metastore URL; ``port`` is owned by another program; the server exited or did not listen
            within ``timeout_s`` (the message ends with its log's last lines).
    """
    if not metastore:
        raise RuntimeError("GOVLAKE_METASTORE_URL is unset: the SQL endpoint serves the persistent catalog "
                           "(e.g. postgresql://govlake@127.0.0.1:55432/metastore)")
    running = _pid(settings)
    if running is not None:
        return running
    if port_in_use(port):
        raise RuntimeError(f"port {BIND_HOST}:{port} is in use by another program; set GOVLAKE_SQL_PORT to a free port")
    password = init(settings)
    if password is not None:
        print(f"sql endpoint: user {DEFAULT_USER}, password {password} (kept in {password_file(settings)})")
    for name in init_principals(settings):
        print(f"sql endpoint: user {name}, password in {password_file(settings, name)}")
    from govlake.governance.access import write_access_file

    write_access_file(settings)  # every user's decisions, from the current grants
    ensure_metastore_database(metastore)
    props = write_properties(settings, server_properties(settings, metastore, port))
    log = state_dir(settings) / "server.log"
    env = {**os.environ, "SPARK_HOME": str(spark_home()), "SPARK_LOCAL_IP": BIND_HOST, "TZ": TIME_ZONE,
           "PYSPARK_PYTHON": sys.executable}
    env.pop("PYSPARK_GATEWAY_PORT", None)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [str(spark_home() / "bin" / "spark-submit"), "--properties-file", str(props), "--class", SERVER_CLASS,
             "spark-internal"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=state_dir(settings),
            start_new_session=True)
    fsio.atomic_write_text(state_dir(settings) / "server.pid", f"{proc.pid}\n")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            (state_dir(settings) / "server.pid").unlink(missing_ok=True)
            raise RuntimeError(f"the SQL endpoint exited with {proc.returncode}:\n{_tail(log)}")
        if _accepts(port):
            return proc.pid
        time.sleep(1)
    stop(settings)
    raise RuntimeError(f"the SQL endpoint did not listen on {BIND_HOST}:{port} within {timeout_s:.0f} s:\n{_tail(log)}")


def _tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


def stop(settings: Settings, timeout_s: float = 30) -> bool:
    """Stop the endpoint of this GovLake home (SIGTERM to its process group, SIGKILL after ``timeout_s``).

    Returns:
        True when a server was running.
    """
    pid = _pid(settings)
    pid_path = state_dir(settings) / "server.pid"
    if pid is None:
        pid_path.unlink(missing_ok=True)
        return False
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _pid(settings) is not None:
        with contextlib.suppress(ChildProcessError):  # our child (started by this process): reap the zombie
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.5)
    if _pid(settings) is not None:
        os.killpg(pid, signal.SIGKILL)
    pid_path.unlink(missing_ok=True)
    return True


def status(settings: Settings, port: int) -> str:
    """One line: running (pid, JDBC URL) or stopped."""
    pid = _pid(settings)
    if pid is None:
        return "sql endpoint: stopped"
    state = "listening" if _accepts(port) else "starting"
    return f"sql endpoint: running (pid {pid}, {state}) at {jdbc_url(port)}, user {DEFAULT_USER}"


def spark_sql(settings: Settings, metastore: str | None, args: list[str], port: int) -> int:
    """Run the wheel's ``spark-sql`` with the endpoint's properties (same catalog, Delta, jars); returns its exit
    status.

    Raises:
        RuntimeError: no metastore URL.
    """
    if not metastore:
        raise RuntimeError("GOVLAKE_METASTORE_URL is unset: spark-sql would see an empty catalog")
    ensure_metastore_database(metastore)
    conf = server_properties(settings, metastore, port)
    conf["spark.app.name"] = "govlake-spark-sql"
    # a local tool of whoever can read the lakehouse's files (a steward): no routing, no checks
    conf["spark.sql.extensions"] = "io.delta.sql.DeltaSparkSessionExtension"
    props = write_properties(settings, conf)
    env = {**os.environ, "SPARK_HOME": str(spark_home()), "SPARK_LOCAL_IP": BIND_HOST, "TZ": TIME_ZONE}
    return subprocess.run([str(spark_home() / "bin" / "spark-sql"), "--properties-file", str(props), *args],
                          env=env, cwd=state_dir(settings), check=False).returncode


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m govlake.serve.sql_endpoint", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    init_p = sub.add_parser("init", help=f"create the users file with user {DEFAULT_USER} (password printed once)")
    init_p.add_argument("--reset", action="store_true", help=f"give {DEFAULT_USER} a new password")
    sub.add_parser("start", help="start the endpoint in the background (init first when needed)")
    sub.add_parser("stop", help="stop the endpoint")
    sub.add_parser("status", help="is the endpoint running")
    sub.add_parser("build-jar", help="compile the authenticator's jar into the jar cache (docker/setup.sh)")
    sub.add_parser("spark-sql", help="pyspark's spark-sql on the endpoint's catalog (arguments passed on)")
    argv = sys.argv[1:] if argv is None else argv
    settings = Settings.from_env()
    port = config.sql_port()
    if argv[:1] == ["spark-sql"]:  # everything after it is spark-sql's (argparse's REMAINDER drops "-e" etc.)
        try:
            return spark_sql(settings, config.metastore_url(), argv[1:], port)
        except RuntimeError as exc:
            print(f"sql endpoint: {exc}", file=sys.stderr)
            return 1
    args = parser.parse_args(argv)
    try:
        if args.command == "init":
            password = init(settings, reset=args.reset)
            if password is None:
                print(f"sql endpoint: users file {users_file(settings)} exists (use --reset for a new password)")
            else:
                print(f"sql endpoint: user {DEFAULT_USER}, password {password} (kept in {password_file(settings)})")
        elif args.command == "start":
            pid = start(settings, port, config.metastore_url())
            print(f"sql endpoint: running (pid {pid}) at {jdbc_url(port)}, user {DEFAULT_USER}, password in "
                  f"{password_file(settings)}")
        elif args.command == "stop":
            print("sql endpoint: stopped" if stop(settings) else "sql endpoint: not running")
        elif args.command == "status":
            print(status(settings, port))
        elif args.command == "build-jar":
            print(build_auth_jar(settings.jars_dir))
    except RuntimeError as exc:
        print(f"sql endpoint: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
