"""`docker/platform.sh up|down`: the day-to-day platform (Airflow 3 api-server, scheduler, dag-processor,
triggerer, log servers, reports over HTTP) started for real on test ports with a temporary GOVLAKE_HOME.

Ports (overridable): GOVLAKE_TEST_AIRFLOW_PORT 28080, GOVLAKE_TEST_REPORTS_PORT 28000, GOVLAKE_TEST_WORKER_LOG_PORT
28793, GOVLAKE_TEST_TRIGGER_LOG_PORT 28794. The platform gets a PostgreSQL and FerretDB of its own
(GOVLAKE_TEST_PG_PORT 28432, GOVLAKE_TEST_MONGO_PORT 28018: started by `up`, stopped by `down`), so the suite's
servers are never touched; the test checks they still run after `down`.
The SQL endpoint and the dashboard are skipped (kept light).
"""
from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path

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

    def api(self, path: str) -> dict:
        """GET ``/api/v2<path>`` as admin, JSON."""
        req = urllib.request.Request(f"{self.url}/api/v2{path}", headers={"Authorization": f"Bearer {self.token()}"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.load(resp)


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    home = tmp_path_factory.mktemp("platform_home")
    (home / "reports").mkdir()
    (home / "reports" / "hello.html").write_text("<p>GovLake reports 报告</p>", encoding="utf-8")
    env = {**os.environ, **{k: str(v) for k, v in PORTS.items()}, "GOVLAKE_HOME": str(home),
           "GOVLAKE_SQL_ENDPOINT": "0", "GOVLAKE_DASHBOARD": "0"}
    env.pop("GOVLAKE_PLATFORM_DIR", None)
    env.pop("AIRFLOW_HOME", None)
    from govlake.serve.reports_http import port_in_use

    taken = [p for p in PORTS.values() if port_in_use(p)]
    if taken:  # the platform would refuse them: not this test's failure to find
        pytest.fail(f"test ports taken: {taken}; set GOVLAKE_TEST_*_PORT")
    up = _script("up", env)
    assert up.returncode == 0, up.stdout + up.stderr
    started = Platform(env, home, up.stdout)
    yield started
    _script("down", env)


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
