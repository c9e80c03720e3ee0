"""Start, stop and check the decision-support dashboard (a Streamlit server on loopback).

``python -m govlake.serve.dashboard start|stop|status``:

* ``start`` runs ``streamlit run govlake/serve/dashboard_app.py --server.address 127.0.0.1 --server.port
  $GOVLAKE_DASHBOARD_PORT --server.headless true --browser.gatherUsageStats false`` in the background (its own
  process group, output appended to ``$GOVLAKE_HOME/logs/dashboard.log``), waits until ``/_stcore/health`` answers
  and records ``$GOVLAKE_HOME/run/dashboard.pid``. Already running: says so and exits 0. A port another program
  owns: exits 1 naming the port (and the owner when the system tells it), before anything is started.
* ``stop`` ends the recorded server (SIGTERM, SIGKILL after 10 s) and removes the pid file; nothing running is
  not an error.
* ``status`` prints ``running pid=… port=… url=…`` (exit 0) or ``stopped`` (exit 3, as LSB init scripts).

The server reads the same environment (``GOVLAKE_HOME`` / ``GOVLAKE_LAKEHOUSE``) as the pipeline.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from govlake.core import config, fsio
from govlake.core.config import Settings

APP = Path(__file__).with_name("dashboard_app.py")
HOST = "127.0.0.1"
#: Seconds ``start`` waits for the health check, ``stop`` for the process to end after SIGTERM.
START_TIMEOUT_S, STOP_TIMEOUT_S = 90.0, 10.0


def pid_file(settings: Settings) -> Path:
    """``$GOVLAKE_HOME/run/dashboard.pid`` (JSON: ``pid``, ``port``, ``app``)."""
    return settings.home / "run" / "dashboard.pid"


def log_file(settings: Settings) -> Path:
    """``$GOVLAKE_HOME/logs/dashboard.log`` (the server's stdout and stderr, appended)."""
    return settings.home / "logs" / "dashboard.log"


def command(port: int) -> list[str]:
    """The server's command line (this Python's Streamlit, loopback only, no browser, no usage statistics)."""
    return [sys.executable, "-m", "streamlit", "run", str(APP), "--server.address", HOST, "--server.port", str(port),
            "--server.headless", "true", "--browser.gatherUsageStats", "false",
            "--server.fileWatcherType", "none", "--global.developmentMode", "false", "--client.toolbarMode", "minimal"]


def port_owner(port: int) -> str | None:
    """Who listens on ``HOST:port``: ``None`` when the port is free, else a description (``pid … (name)`` when the
    system tells it, else ``another program``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # as the server will (tornado sets it): a port whose last connections are in TIME_WAIT is free, a port
        # with a listener is not
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
            return None
        except OSError:
            pass
    try:
        import psutil

        for conn in psutil.net_connections(kind="tcp"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
                return f"pid {conn.pid} ({psutil.Process(conn.pid).name()})"
    except Exception:  # noqa: BLE001 - the owner is a courtesy; the port is taken either way
        pass
    return "another program"


def _recorded(settings: Settings) -> dict | None:
    """The pid file's record when its process is alive and is this dashboard's server, else None (a stale file is
    removed)."""
    path = pid_file(settings)
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        cmdline = Path(f"/proc/{int(record['pid'])}/cmdline").read_bytes().decode(errors="replace")
    except (OSError, ValueError, KeyError):
        cmdline = ""
        record = None
    if record is None or "streamlit" not in cmdline or str(APP) not in cmdline:
        path.unlink(missing_ok=True)  # the process is gone (or the pid was reused by another program)
        return None
    return record


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/_stcore/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def start(settings: Settings, port: int) -> int:
    """Start the server; returns the exit code (0 started or already running, 1 port taken or start failed)."""
    running = _recorded(settings)
    if running:
        print(f"dashboard already running: pid={running['pid']} port={running['port']} "
              f"url=http://{HOST}:{running['port']}/")
        return 0
    owner = port_owner(port)
    if owner:
        print(f"dashboard: port {HOST}:{port} is in use by {owner}; set GOVLAKE_DASHBOARD_PORT to a free port",
              file=sys.stderr)
        return 1
    log = log_file(settings)
    log.parent.mkdir(parents=True, exist_ok=True)
    pid_file(settings).parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(command(port), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, cwd=str(settings.home))
    fsio.atomic_write_text(pid_file(settings), json.dumps({"pid": proc.pid, "port": port, "app": str(APP)}))
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        if _healthy(port):
            print(f"dashboard started: pid={proc.pid} port={port} url=http://{HOST}:{port}/ log={log}")
            return 0
        time.sleep(0.3)
    _end(proc.pid)
    pid_file(settings).unlink(missing_ok=True)
    tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
    print(f"dashboard did not start on port {port} within {START_TIMEOUT_S:.0f} s; last lines of {log}:\n"
          + "\n".join(tail), file=sys.stderr)
    return 1


def _end(pid: int) -> None:
    """SIGTERM the server's process group (it leads its own session), SIGKILL after :data:`STOP_TIMEOUT_S`."""
    for sig, wait in ((signal.SIGTERM, STOP_TIMEOUT_S), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                if os.waitpid(pid, os.WNOHANG) != (0, 0):
                    return  # our child, reaped
            except ChildProcessError:  # started by another process: poll for it
                if not Path(f"/proc/{pid}").exists():
                    return
            time.sleep(0.1)


def stop(settings: Settings) -> int:
    """Stop the recorded server; returns 0 (also when nothing was running)."""
    running = _recorded(settings)
    if not running:
        print("dashboard not running")
        return 0
    _end(int(running["pid"]))
    pid_file(settings).unlink(missing_ok=True)
    print(f"dashboard stopped: pid={running['pid']}")
    return 0


def status(settings: Settings) -> int:
    """Print the server's state; returns 0 running, 3 stopped."""
    running = _recorded(settings)
    if not running:
        print("dashboard stopped")
        return 3
    state = "running" if _healthy(int(running["port"])) else "starting"
    print(f"dashboard {state}: pid={running['pid']} port={running['port']} url=http://{HOST}:{running['port']}/")
    return 0


def main(argv: list[str] | None = None) -> int:
    """CLI entry point (``python -m govlake.serve.dashboard start|stop|status``)."""
    parser = argparse.ArgumentParser(prog="python -m govlake.serve.dashboard", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("start", "stop", "status"))
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    if args.action == "start":
        return start(settings, config.dashboard_port())
    return stop(settings) if args.action == "stop" else status(settings)


if __name__ == "__main__":
    sys.exit(main())
