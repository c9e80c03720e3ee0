"""Airflow's log server (task and trigger logs for the UI) bound to loopback.

Airflow 3.3's ``airflow.utils.serve_logs.core.serve_logs`` (started inside ``airflow scheduler`` and ``airflow
triggerer``) always binds every interface (``host=""``) and has no host option. ``docker/platform.sh`` therefore
starts the scheduler and the triggerer with ``--skip-serve-logs`` and runs this module twice instead: the same
ASGI app (``airflow.utils.serve_logs.log_server:get_app``, JWT-checked with ``[api] secret_key``) on
``127.0.0.1:[logging] worker_log_server_port`` and ``127.0.0.1:[logging] trigger_log_server_port``.

The API server fetches a running task's log from ``http://<task instance hostname>:<port>``: :func:`hostname`
(``[core] hostname_callable``) makes that hostname ``127.0.0.1`` so it reaches this loopback server.

CLI: ``python -m govlake.serve.airflow_logs --port 8793``.
"""
from __future__ import annotations

import argparse
import sys

HOST = "127.0.0.1"


def hostname() -> str:
    """``[core] hostname_callable`` of the loopback platform: every component runs on this host, on loopback."""
    return HOST


def main(argv: list[str] | None = None) -> int:
    """Serve Airflow's log folder on 127.0.0.1:``--port`` until killed.

    Raises:
        SystemExit(1): the port is taken (another program owns it).
    """
    import uvicorn

    from govlake.serve.reports_http import port_in_use

    parser = argparse.ArgumentParser(prog="python -m govlake.serve.airflow_logs")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    if port_in_use(args.port):
        raise SystemExit(f"airflow_logs: {HOST}:{args.port} is owned by another program")
    try:
        from setproctitle import setproctitle

        setproctitle(f"airflow serve-logs {HOST}:{args.port}")
    except ImportError:  # optional nicety: the process name in ps
        pass
    uvicorn.run("airflow.utils.serve_logs.log_server:get_app", host=HOST, port=args.port, factory=True,
                log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
