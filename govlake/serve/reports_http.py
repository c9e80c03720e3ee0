"""The reports folder (``$GOVLAKE_HOME/reports``: decision-support report, Data Docs, run summaries) over HTTP.

Python's ``http.server`` on loopback (``127.0.0.1:8000`` by default, ``GOVLAKE_REPORTS_PORT``), read-only static
files. The Airflow "Data Docs" extra link (plugins/govlake_data_docs.py) points here through
``GOVLAKE_DATA_DOCS_BASE_URL`` (``docker/platform.sh`` sets it).

CLI::

    python -m govlake.serve.reports_http start [--port 8000] [--dir $GOVLAKE_HOME/reports]   # background, pid file
    python -m govlake.serve.reports_http stop | status
    python -m govlake.serve.reports_http serve ...                                            # foreground

The pid file and log are under ``$GOVLAKE_HOME/platform`` (``GOVLAKE_PLATFORM_DIR``). A port another program
listens on is refused with a message naming it (exit 1).
"""
from __future__ import annotations

import argparse
import functools
import http.server
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from govlake.core import fsio

HOST = "127.0.0.1"
DEFAULT_PORT = 8000
NAME = "reports_http"


def platform_dir(env: dict[str, str] | None = None) -> Path:
    """Folder of the platform's pid files and logs: ``GOVLAKE_PLATFORM_DIR`` or ``$GOVLAKE_HOME/platform``."""
    from govlake.core import config

    return config.platform_dir(env)


def port_in_use(port: int, host: str = HOST) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def pid_alive(pid_file: Path) -> int | None:
    """The pid in ``pid_file`` when that process is alive, else None."""
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args) -> None:  # noqa: A002  (stdlib signature)
        sys.stdout.write(f"{self.address_string()} {format % args}\n")
        sys.stdout.flush()


def serve(directory: Path, port: int) -> None:
    """Serve ``directory`` on 127.0.0.1:``port`` until killed (SIGTERM ends it cleanly).

    Raises:
        SystemExit(1): the port is taken by another program.
    """
    directory.mkdir(parents=True, exist_ok=True)
    handler = functools.partial(_Handler, directory=str(directory))
    try:
        httpd = http.server.ThreadingHTTPServer((HOST, port), handler)
    except OSError as exc:
        raise SystemExit(f"reports_http: cannot bind {HOST}:{port} ({exc}); another program owns the port") from exc
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    print(f"reports_http: serving {directory} on http://{HOST}:{port}/", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()


def start(directory: Path, port: int, pdir: Path) -> int:
    """Start :func:`serve` in the background (idempotent: a running server is reused). Returns its pid.

    Raises:
        SystemExit(1): the port is owned by another program, or the server did not come up within 10 s.
    """
    pdir.mkdir(parents=True, exist_ok=True)
    pid_file = pdir / f"{NAME}.pid"
    pid = pid_alive(pid_file)
    if pid:
        return pid
    if port_in_use(port):
        raise SystemExit(f"reports_http: 127.0.0.1:{port} is owned by another program; set GOVLAKE_REPORTS_PORT")
    log = open(pdir / f"{NAME}.log", "ab")  # noqa: SIM115  (handed to the child)
    proc = subprocess.Popen([sys.executable, "-m", "govlake.serve.reports_http", "serve", "--port", str(port),
                             "--dir", str(directory)], stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    fsio.atomic_write_text(pid_file, str(proc.pid))
    for _ in range(100):
        if port_in_use(port):
            return proc.pid
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise SystemExit(f"reports_http: did not start; see {pdir / (NAME + '.log')}")


def stop(pdir: Path) -> bool:
    """Stop the background server of ``pdir`` (SIGTERM, then SIGKILL after 10 s). False when none was running."""
    pid_file = pdir / f"{NAME}.pid"
    pid = pid_alive(pid_file)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    for _ in range(100):
        if pid_alive(pid_file) is None:
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
    return True


def main(argv: list[str] | None = None) -> int:
    """CLI entry point (see the module docstring)."""
    from govlake.core.config import Settings

    parser = argparse.ArgumentParser(prog="python -m govlake.serve.reports_http")
    parser.add_argument("command", choices=["start", "stop", "status", "serve"])
    parser.add_argument("--port", type=int, default=None,
                        help=f"port (default GOVLAKE_REPORTS_PORT or {DEFAULT_PORT})")
    parser.add_argument("--dir", type=Path, default=None, help="folder to serve (default $GOVLAKE_HOME/reports)")
    args = parser.parse_args(argv)
    if args.port is None:
        from govlake.core import config

        args.port = config.tcp_port("GOVLAKE_REPORTS_PORT", DEFAULT_PORT)
    directory = args.dir or Settings.from_env().reports_dir
    pdir = platform_dir()
    if args.command == "serve":
        serve(directory, args.port)
    elif args.command == "start":
        pid = start(directory, args.port, pdir)
        print(f"reports_http: http://{HOST}:{args.port}/ (pid {pid}, serving {directory})")
    elif args.command == "stop":
        print("reports_http: stopped" if stop(pdir) else "reports_http: not running")
    else:
        running = pid_alive(pdir / f"{NAME}.pid")
        print(f"reports_http: running (pid {running}) on http://{HOST}:{args.port}/" if running
              else "reports_http: stopped")
        return 0 if running else 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
