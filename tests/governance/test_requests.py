"""Data requests and grants on real Delta tables (delta-rs): the workflow, its refusals, the service levels on
China's working days, and a revocation reaching the endpoint's access file."""
from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from govlake.core.config import Settings
from govlake.governance import requests as rq
from govlake.governance.policy import Principal

LOCAL = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 12, 4, 2, 0, tzinfo=UTC)  # Friday 10:00 in Shijiazhuang
CTX = rq.Context(
    {"changan": Principal("changan", "district_official", district_code="130102"),
     "steward": Principal("steward", "steward")},
    {"unified.person": ("conditional", "大数据中心"), "raw.health_deaths": ("not_shared", "卫健委"),
     "marts.population_density": ("unconditional", "大数据中心")})


@pytest.fixture()
def home(tmp_path) -> Settings:
    return Settings.from_env({"GOVLAKE_HOME": str(tmp_path)})


def _submit(settings, resource="unified.person", at=T0, end=date(2026, 12, 31)):
    return rq.submit(settings, CTX, "changan", resource, "低保复核", "核对申请人户籍", date(2026, 12, 4), end, now=at)


def test_request_review_approve_revoke_leaves_dated_rows_and_events(home):
    req = _submit(home)
    assert req["request_id"] == "DR-20261204-0001" and req["status"] == "submitted"
    assert _submit(home)["request_id"] == "DR-20261204-0002"
    rq.start_review(home, "DR-20261204-0001", "steward", now=T0 + timedelta(hours=1))
    done = rq.decide(home, "DR-20261204-0001", "steward", approve=True, reason="", now=T0 + timedelta(hours=2))
    assert (done["status"], done["grant_id"]) == ("approved", "G-20261204-0001")
    refused = rq.decide(home, "DR-20261204-0002", "steward", approve=False, reason="duplicate of DR-20261204-0001",
                        now=T0 + timedelta(hours=3))
    assert (refused["status"], refused["decision_reason"], refused["grant_id"]) == (
        "refused", "duplicate of DR-20261204-0001", None)
    [grant] = rq.grants(home)
    # the grant ends with the request's period: 2027-01-01 00:00 in Shijiazhuang
    assert grant.expires_at == datetime(2027, 1, 1, tzinfo=LOCAL) and grant.revoked_at is None
    rq.revoke(home, "G-20261204-0001", "steward", "use case closed", now=T0 + timedelta(days=1))
    assert rq.grants(home)[0].revoked_at == T0 + timedelta(days=1)
    events = sorted(rq.read_table(home, "grant_events"), key=lambda e: (e["at"], e["action"], e["request_id"]))
    assert [(e["actor"], e["action"], e["request_id"], e["grant_id"]) for e in events] == [
        ("changan", "request", "DR-20261204-0001", None),
        ("changan", "request", "DR-20261204-0002", None),
        ("steward", "review", "DR-20261204-0001", None),
        ("steward", "approve", "DR-20261204-0001", "G-20261204-0001"),
        ("steward", "refuse", "DR-20261204-0002", None),
        ("steward", "review", "DR-20261204-0002", None),
        ("steward", "revoke", "DR-20261204-0001", "G-20261204-0001"),
    ]
    assert {r["request_id"]: r["status"] for r in rq.read_table(home, "requests")} == {
        "DR-20261204-0001": "approved", "DR-20261204-0002": "refused"}


@pytest.mark.parametrize("resource, message", [
    ("raw.health_deaths",
     "request for raw.health_deaths: it is 不予共享 \\(not_shared\\) by 卫健委, never shared outside its department"),
    ("marts.population_density", "it is 无条件共享 \\(unconditional\\): readable without a request"),
    ("unified.persons", "request for 'unified.persons': not a catalogued resource"),
])
def test_requests_that_cannot_be_filed_are_refused_with_the_rule(home, resource, message):
    with pytest.raises(rq.RequestError, match=message):
        _submit(home, resource)
    assert rq.read_table(home, "requests") == []


def test_review_steps_are_refused_out_of_order(home):
    _submit(home)
    with pytest.raises(rq.RequestError, match="changan cannot review their own request"):
        rq.decide(home, "DR-20261204-0001", "changan", approve=True, reason="", now=T0)
    with pytest.raises(rq.RequestError, match="a refusal needs a reason"):
        rq.decide(home, "DR-20261204-0001", "steward", approve=False, reason=" ", now=T0)
    rq.decide(home, "DR-20261204-0001", "steward", approve=True, reason="", now=T0)
    with pytest.raises(rq.RequestError, match="request DR-20261204-0001 is already approved"):
        rq.decide(home, "DR-20261204-0001", "steward", approve=True, reason="", now=T0)
    with pytest.raises(rq.RequestError, match="no grant G-X"):
        rq.revoke(home, "G-X", "steward", "x", now=T0)


def test_working_days_skip_holidays_and_count_make_up_days():
    # 2026 New Year: 1-3 January off, Sunday 4 January a working day (国务院办公厅 2026 holiday notice)
    new_year_eve = datetime(2025, 12, 31, 10, 0, tzinfo=LOCAL)
    assert rq.add_working_days(new_year_eve, 2) == datetime(2026, 1, 5, 10, 0, tzinfo=LOCAL)
    assert rq.add_working_days(new_year_eve, 5) == datetime(2026, 1, 8, 10, 0, tzinfo=LOCAL)
    assert rq.add_working_days(datetime(2026, 12, 4, 10, 0, tzinfo=LOCAL), 2) == datetime(2026, 12, 8, 10, 0,
                                                                                         tzinfo=LOCAL)


def test_overdue_requests_are_reported_per_step(home):
    _submit(home)                                   # Friday: review due Tuesday 10:00, reply due Friday 10:00
    _submit(home, at=T0 + timedelta(days=3))        # Monday: reviewed in time
    rq.start_review(home, "DR-20261207-0001", "steward", now=T0 + timedelta(days=3, hours=5))
    as_of = datetime(2026, 12, 9, 4, 0, tzinfo=UTC)  # Wednesday 12:00
    assert rq.overdue(home, as_of) == [
        {"request_id": "DR-20261204-0001", "resource": "unified.person", "requester": "changan",
         "status": "submitted", "step": "review", "due": datetime(2026, 12, 8, 2, 0, tzinfo=UTC), "done": None,
         "late_by_hours": 26.0}]
