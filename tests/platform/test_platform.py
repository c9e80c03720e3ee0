"""`docker/platform.sh up|down`: the day-to-day platform (Airflow 3 api-server, scheduler, dag-processor,
triggerer, log servers, reports over HTTP) started for real on test ports with a temporary GOVLAKE_HOME.

Ports (overridable): GOVLAKE_TEST_AIRFLOW_PORT 28080, GOVLAKE_TEST_REPORTS_PORT 28000, GOVLAKE_TEST_WORKER_LOG_PORT
28793, GOVLAKE_TEST_TRIGGER_LOG_PORT 28794. The platform gets a PostgreSQL and FerretDB of its own
(GOVLAKE_TEST_PG_PORT 28432, GOVLAKE_TEST_MONGO_PORT 28018: started by `up`, stopped by `down`), so the suite's
servers are never touched; the test checks they still run after `down`.
The SQL endpoint, the dashboard and Data Docs are skipped (kept light). The departments' connections are Airflow
connections in the metadata database (imported by `up`, not AIRFLOW_CONN_* variables); the sample is loaded into the
platform's servers and a scheduled run of a quiet day (an empty file drop; the databases' first, full delivery) reads
them and completes.
"""
from __future__ import annotations

import csv
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from zoneinfo import ZoneInfo

import psutil
import pytest

from tests.browser import nonblank_fraction

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
PORTS = {
    "GOVLAKE_PG_PORT": int(os.environ.get("GOVLAKE_TEST_PG_PORT", "28432")),
    "GOVLAKE_MONGO_PORT": int(os.environ.get("GOVLAKE_TEST_MONGO_PORT", "28018")),
    "GOVLAKE_AIRFLOW_PORT": int(os.environ.get("GOVLAKE_TEST_AIRFLOW_PORT", "28080")),
    "GOVLAKE_REPORTS_PORT": int(os.environ.get("GOVLAKE_TEST_REPORTS_PORT", "28000")),
    "GOVLAKE_WORKER_LOG_PORT": int(os.environ.get("GOVLAKE_TEST_WORKER_LOG_PORT", "28793")),
    "GOVLAKE_TRIGGER_LOG_PORT": int(os.environ.get("GOVLAKE_TEST_TRIGGER_LOG_PORT", "28794")),
}
LOOPBACK = {"127.0.0.1", "::ffff:127.0.0.1", "::1"}
SHANGHAI = ZoneInfo("Asia/Shanghai")


def _script(command: str, env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(ROOT / "docker" / "platform.sh"), command], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


class Platform:
    """The started platform: its environment, folder, admin password and the output of `up`."""

    def __init__(self, env: dict[str, str], home: Path, up_output: str) -> None:
        self.env = env
        self.home = home
        self.dir = home / "platform"
        self.up_output = up_output
        self.url = f"http://127.0.0.1:{PORTS['GOVLAKE_AIRFLOW_PORT']}"
        self.password = json.loads((self.dir / "admin_password.json").read_text())["admin"]

    def pids(self) -> list[int]:
        """Pids of every process the platform started, with their descendants."""
        out: set[int] = set()
        for pid_file in self.dir.glob("*.pid"):
            try:
                proc = psutil.Process(int(pid_file.read_text()))
                out |= {proc.pid, *(c.pid for c in proc.children(recursive=True))}
            except (psutil.NoSuchProcess, ValueError):
                continue
        return sorted(out)

    def token(self) -> str:
        """A JWT for the REST API (POST /auth/token as admin)."""
        req = urllib.request.Request(f"{self.url}/auth/token", method="POST",
                                     data=json.dumps({"username": "admin", "password": self.password}).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.load(resp)["access_token"]

    def api(self, path: str, method: str = "GET", body: dict | None = None) -> dict:
        """``/api/v2<path>`` as admin (GET, or ``method`` with a JSON ``body``), JSON."""
        req = urllib.request.Request(f"{self.url}/api/v2{path}", method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Authorization": f"Bearer {self.token()}",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.load(resp)


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    home = tmp_path_factory.mktemp("platform_home")
    (home / "reports").mkdir()
    (home / "reports" / "hello.html").write_text("<p>GovLake reports 报告</p>", encoding="utf-8")
    env = {**os.environ, **{k: str(v) for k, v in PORTS.items()}, "GOVLAKE_HOME": str(home),
           "GOVLAKE_SQL_ENDPOINT": "0", "GOVLAKE_DASHBOARD": "0",
           "GOVLAKE_DATA_DOCS": "0"}  # kept light: no GX checkpoints, no site (tests/quality covers them)
    env.pop("GOVLAKE_PLATFORM_DIR", None)
    env.pop("AIRFLOW_HOME", None)
    for var in [v for v in env if v.startswith("AIRFLOW_CONN_")]:  # the suite's servers: the tasks must not see them
        env.pop(var)
    from govlake.serve.reports_http import port_in_use

    taken = [p for p in PORTS.values() if port_in_use(p)]
    if taken:  # the platform would refuse them: not this test's failure to find
        pytest.fail(f"test ports taken: {taken}; set GOVLAKE_TEST_*_PORT")
    # a fresh data folder for its servers (a PostgreSQL kept from an earlier session would hold its Airflow runs);
    # outside pytest's 0700 temporary folder, as the postgres user must reach it
    run_dir = Path(tempfile.mkdtemp(prefix="govlake-platform-test-", dir="/tmp"))
    run_dir.chmod(0o755)
    env["GOVLAKE_RUN_DIR"] = str(run_dir / "services")
    up = _script("up", env)
    assert up.returncode == 0, up.stdout + up.stderr
    started = Platform(env, home, up.stdout)
    yield started
    _script("down", env)
    shutil.rmtree(run_dir, ignore_errors=True)


def test_up_prints_urls_and_password_once(platform):
    assert f"{platform.url}/" in platform.up_output
    assert platform.password in platform.up_output
    assert oct((platform.dir / "admin_password.json").stat().st_mode & 0o777) == "0o600"
    again = _script("up", platform.env)          # idempotent: everything reused, password not shown again
    assert again.returncode == 0, again.stderr
    assert "started" not in again.stdout and "running (pid" in again.stdout
    assert platform.password not in again.stdout


def test_every_listening_port_is_loopback(platform):
    listening = set()
    for pid in platform.pids():
        try:
            conns = psutil.Process(pid).net_connections(kind="inet")
        except psutil.NoSuchProcess:
            continue
        listening |= {(c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN}
    served = {v for k, v in PORTS.items() if k not in ("GOVLAKE_PG_PORT", "GOVLAKE_MONGO_PORT")}  # its own processes
    assert {p for _, p in listening} >= served, listening
    assert {ip for ip, _ in listening} <= LOOPBACK, listening


def test_reports_server_serves_a_file(platform):
    with urllib.request.urlopen(f"http://127.0.0.1:{PORTS['GOVLAKE_REPORTS_PORT']}/hello.html", timeout=10) as r:
        assert r.read().decode("utf-8") == "<p>GovLake reports 报告</p>"


def test_dag_parsed_without_import_errors(platform):
    deadline = time.time() + 180
    while time.time() < deadline:
        dags = [d["dag_id"] for d in platform.api("/dags")["dags"]]
        if "govlake_daily" in dags:
            break
        time.sleep(3)
    assert dags == ["govlake_daily"]
    assert platform.api("/importErrors") == {"import_errors": [], "total_entries": 0}


def test_ui_login_and_dag_grid(platform, browser):
    context = browser.new_context(viewport={"width": 1400, "height": 900}, timezone_id="Asia/Shanghai")
    page = context.new_page()
    try:
        page.goto(f"{platform.url}/dags/govlake_daily", wait_until="networkidle")
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", platform.password)
        page.click("button[type=submit]")
        page.wait_for_url("**/dags/govlake_daily**", timeout=60_000)
        page.get_by_text("extract_hukou").first.wait_for(timeout=60_000)   # the grid lists the tasks
        ARTIFACTS.mkdir(exist_ok=True)
        png = page.screenshot(path=str(ARTIFACTS / "govlake_daily_grid.png"), full_page=True)
        assert nonblank_fraction(png) > 0.05
        assert page.get_by_text("analysis").count() >= 1
    finally:
        context.close()


def test_departments_connections_are_airflow_connections(platform):
    conn = platform.api("/connections/govlake_hukou")
    assert (conn["conn_type"], conn["host"], conn["port"], conn["login"], conn["schema"]) == (
        "postgres", "127.0.0.1", PORTS["GOVLAKE_PG_PORT"], "govlake", "departments")
    conn = platform.api("/connections/govlake_wangge")
    assert (conn["conn_type"], conn["host"], conn["port"]) == ("mongo", "127.0.0.1", PORTS["GOVLAKE_MONGO_PORT"])
    scheduler = int((platform.dir / "scheduler.pid").read_text())
    assert [v for v in psutil.Process(scheduler).environ() if v.startswith("AIRFLOW_CONN_")] == []


def _task_failure(platform: Platform, run_id: str) -> str | None:
    """"task: state" of the run's failed or retrying task instances, with the end of the first one's log."""
    tis = platform.api(f"/dags/govlake_daily/dagRuns/{run_id}/taskInstances?limit=100")["task_instances"]
    bad = [ti for ti in tis if ti["state"] in ("failed", "up_for_retry", "upstream_failed")]
    if not bad:
        return None
    logs = sorted((platform.dir / "airflow" / "logs").rglob(f"task_id={bad[0]['task_id']}/attempt=*.log"))
    tail = logs[-1].read_text(errors="replace")[-4000:] if logs else "(no log)"
    return ", ".join(f"{ti['task_id']}: {ti['state']}" for ti in bad) + "\n" + tail


def _quiet_drop(sources: Path, day: dt.date) -> None:
    """The government service centre's file drop of a day without messages: each file of the sample's drop, header
    only, with its manifest (the exchange delivers a drop every day; a missing one is a failed delivery)."""
    from sample.writers import write_drop

    sample = sources / "inbox" / "zhengwu" / "2025-06-30"
    files: list[tuple[str, str, list[str], list[list[str]]]] = []
    for entry in json.loads((sample / "manifest.json").read_text(encoding="utf-8"))["files"]:
        with open(sample / entry["name"], encoding=entry["encoding"], newline="") as f:
            header = next(csv.reader(f))
        files.append((Path(entry["name"]).stem, entry.get("format", "csv"), header, []))
    write_drop(sources / "inbox" / "zhengwu" / day.isoformat(), "zhengwu", day.isoformat(), files)


@pytest.mark.timeout(2700)  # 18 tasks, two at a time, each a Spark driver: 15-25 min on a busy 2-core machine
def test_a_scheduled_run_of_a_quiet_day_completes(platform):
    # the sample municipality (business day 2025-06-30) in the platform's own servers: the latest closed interval,
    # which the scheduler runs, has no new rows and an empty drop
    pg, mongo = PORTS["GOVLAKE_PG_PORT"], PORTS["GOVLAKE_MONGO_PORT"]
    load = subprocess.run([sys.executable, "-m", "sample.generate", "--residents", "300", "--seed", "20250630",
                           "--logical-date", "2025-06-30", "--target", "servers", "--out",
                           str(platform.home / "sources"), "--pg-url",
                           f"postgresql+psycopg://govlake@127.0.0.1:{pg}/departments",
                           "--mongo-url", f"mongodb://127.0.0.1:{mongo}/"],
                          cwd=ROOT, env=platform.env, capture_output=True, text=True, timeout=600)
    assert load.returncode == 0, load.stderr[-3000:]
    today = dt.datetime.now(SHANGHAI).date()
    for day in (today - dt.timedelta(days=1), today):  # the latest closed business day (today's: past midnight)
        _quiet_drop(platform.home / "sources", day)
    assert platform.api("/dags/govlake_daily", "PATCH", {"is_paused": False})["is_paused"] is False
    deadline, run = time.time() + 2400, None
    while time.time() < deadline:
        runs = platform.api("/dags/govlake_daily/dagRuns?limit=5")["dag_runs"]
        run = runs[0] if runs else None
        if run:
            failure = _task_failure(platform, run["dag_run_id"])
            assert failure is None, failure
            if run["state"] in ("success", "failed"):
                break
        time.sleep(10)
    assert run is not None and run["state"] == "success", run
    assert run["run_type"] == "scheduled"
    start = dt.datetime.fromisoformat(run["data_interval_start"]).astimezone(SHANGHAI)
    end = dt.datetime.fromisoformat(run["data_interval_end"]).astimezone(SHANGHAI)
    assert (start.time(), end - start) == (dt.time(0), dt.timedelta(days=1))
    assert end <= dt.datetime.now(SHANGHAI) < end + dt.timedelta(days=1)   # the latest closed business day
    tis = platform.api(f"/dags/govlake_daily/dagRuns/{run['dag_run_id']}/taskInstances?limit=100")["task_instances"]
    assert {ti["state"] for ti in tis} == {"success"} and len(tis) == 18
    day = start.date().isoformat()
    hukou, zhengwu = (_xcom(platform, run["dag_run_id"], f"extract_{s}") for s in ("hukou", "zhengwu"))
    # the lakehouse's first run: the databases' objects are delivered in full (the initial load, read through the
    # connections of the metadata database); the day's drop is empty
    assert {(b["object"], b["logical_date"], b["status"], b["mode"]) for b in hukou} == {
        (o, day, "written", "full") for o in ("persons", "households", "residence_changes")}
    assert all(b["rows_read"] > 0 for b in hukou)
    assert {(b["object"], b["mode"], b["rows_read"]) for b in zhengwu if b["mode"] == "drop"} == {
        ("messages", "drop", 0), ("evaluations", "drop", 0)}


def _xcom(platform: Platform, run_id: str, task_id: str) -> list[dict]:
    """The return value (XCom) of a task of the run: an extract task's batches."""
    value = platform.api(f"/dags/govlake_daily/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value")
    return json.loads(value["value"]) if isinstance(value["value"], str) else value["value"]

def test_down_leaves_no_process(platform):
    pids = platform.pids()
    assert len(pids) >= 7      # api-server, scheduler, dag-processor, triggerer, 2 log servers, reports
    started_by_up = (platform.dir / "started_services").exists()
    down = _script("down", platform.env)
    assert down.returncode == 0, down.stderr
    time.sleep(1)
    alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert alive == []
    assert list(platform.dir.glob("*.pid")) == []
    assert started_by_up  # its own servers (PORTS), started by `up`, stopped by `down`
    if os.environ.get("GOVLAKE_PG_URL"):  # the suite's servers (the environment's ports) still run
        after = subprocess.run(["bash", str(ROOT / "docker" / "services.sh"), "status"], cwd=ROOT, env=os.environ,
                               capture_output=True, text=True).stdout
        assert "postgresql: running" in after and "ferretdb: running" in after
