"""Data requests (共享申请) and grants: request → review → approve (a grant with an expiry) or refuse with a reason;
revocation. Kept in three Delta tables of the lakehouse, written with delta-rs (no Spark JVM for a clerk's action):

- ``governance.requests`` (MERGE on ``request_id``): ``request_id`` STRING, ``requester`` STRING, ``role`` STRING,
  ``resource`` STRING (``layer.table``), ``purpose`` STRING, ``use_case`` STRING, ``period_start`` DATE,
  ``period_end`` DATE, ``submitted_at`` TIMESTAMP, ``status`` STRING (``submitted`` | ``under_review`` |
  ``approved`` | ``refused``), ``reviewer`` STRING, ``review_started_at`` TIMESTAMP, ``decided_at`` TIMESTAMP,
  ``decision_reason`` STRING, ``grant_id`` STRING;
- ``governance.grants`` (MERGE on ``grant_id``): ``grant_id``, ``request_id``, ``user``, ``role``, ``resource``,
  ``purpose`` STRING, ``granted_by`` STRING, ``granted_at`` TIMESTAMP, ``expires_at`` TIMESTAMP (the end of the
  request's period, 24:00 Asia/Shanghai), ``revoked_at`` TIMESTAMP, ``revoked_by`` STRING, ``revoke_reason`` STRING;
- ``governance.grant_events`` (append): ``event_id`` STRING, ``at`` TIMESTAMP, ``actor`` STRING, ``action``
  STRING (``request`` | ``review`` | ``approve`` | ``refuse`` | ``revoke``), ``request_id``, ``grant_id``,
  ``user``, ``resource``, ``purpose``, ``detail`` STRING — the audit of every grant change (who, what, when, why).

Timestamps are UTC instants. Service levels (the local SLA, on top of the 2016 《政务信息资源共享管理暂行办法》
art. 15's ten working days): a request is taken into review within 2 working days of its submission and answered
within 5; working days are China's (public holidays and the 调休 make-up working days of the ``holidays`` package).

Every change rewrites the SQL endpoint's access file (:func:`govlake.governance.access.write_access_file`), so an
approval or a revocation holds from the user's next statement.
"""
from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from govlake.core import fsio
from govlake.core.config import TIME_ZONE, Settings
from govlake.governance.policy import SHARING_LABELS, GrantInfo, Principal

if TYPE_CHECKING:
    import pyarrow as pa

REVIEW_WORKING_DAYS = 2
REPLY_WORKING_DAYS = 5
STATUSES = ("submitted", "under_review", "approved", "refused")
LOCAL = ZoneInfo(TIME_ZONE)


class RequestError(ValueError):
    """A request or a review step is refused: the message names the request, the resource and the rule."""


def _schemas() -> dict[str, pa.Schema]:
    import pyarrow as pa

    ts = pa.timestamp("us", tz="UTC")
    s = pa.string()
    return {
        "requests": pa.schema([
            ("request_id", s), ("requester", s), ("role", s), ("resource", s), ("purpose", s), ("use_case", s),
            ("period_start", pa.date32()), ("period_end", pa.date32()), ("submitted_at", ts), ("status", s),
            ("reviewer", s), ("review_started_at", ts), ("decided_at", ts), ("decision_reason", s),
            ("grant_id", s)]),
        "grants": pa.schema([
            ("grant_id", s), ("request_id", s), ("user", s), ("role", s), ("resource", s), ("purpose", s),
            ("granted_by", s), ("granted_at", ts), ("expires_at", ts), ("revoked_at", ts), ("revoked_by", s),
            ("revoke_reason", s)]),
        "grant_events": pa.schema([
            ("event_id", s), ("at", ts), ("actor", s), ("action", s), ("request_id", s), ("grant_id", s),
            ("user", s), ("resource", s), ("purpose", s), ("detail", s)]),
    }


KEYS = {"requests": "request_id", "grants": "grant_id"}


def _path(settings: Settings, table: str) -> str:
    return settings.table_path("governance", table)


def read_table(settings: Settings, table: str) -> list[dict]:
    """Rows of ``governance.<table>`` (``requests``, ``grants`` or ``grant_events``) as dicts; [] when missing."""
    from deltalake import DeltaTable

    path = _path(settings, table)
    if not DeltaTable.is_deltatable(path):
        return []
    return DeltaTable(path).to_pyarrow_table().to_pylist()


def _upsert(settings: Settings, table: str, rows: list[dict]) -> None:
    """MERGE ``rows`` into ``governance.<table>`` on its key (append for ``grant_events``)."""
    import pyarrow as pa
    from deltalake import DeltaTable, write_deltalake

    schema = _schemas()[table]
    data = pa.Table.from_pylist(rows, schema=schema)
    path = _path(settings, table)
    key = KEYS.get(table)
    if key is None or not DeltaTable.is_deltatable(path):
        write_deltalake(path, data, mode="append")
        return
    (DeltaTable(path).merge(data, predicate=f"t.{key} = s.{key}", source_alias="s", target_alias="t")
     .when_matched_update_all().when_not_matched_insert_all().execute())


def _lock(settings: Settings) -> Path:
    return Path(settings.home) / "governance" / "requests.lock"


def _event(actor: str, action: str, request: Mapping, grant_id: str | None, detail: str, at: datetime) -> dict:
    return {"event_id": uuid.uuid4().hex, "at": at, "actor": actor, "action": action,
            "request_id": request.get("request_id"), "grant_id": grant_id, "user": request.get("requester"),
            "resource": request.get("resource"), "purpose": request.get("purpose"), "detail": detail}


def _next_id(prefix: str, existing: list[dict], key: str, at: datetime) -> str:
    day = at.astimezone(LOCAL).strftime("%Y%m%d")
    taken = sum(1 for r in existing if str(r[key]).startswith(f"{prefix}-{day}-"))
    return f"{prefix}-{day}-{taken + 1:04d}"


# --- working days -------------------------------------------------------------------------------------------------

def add_working_days(start: datetime, days: int) -> datetime:
    """The instant ``days`` Chinese working days after ``start`` (same local time of day): weekends and public
    holidays skipped, 调休 make-up Saturdays/Sundays counted (``holidays.China``)."""
    import holidays

    local = start.astimezone(LOCAL)
    calendar = holidays.China(years=range(local.year, local.year + 2))
    day = local.date()
    left = days
    while left > 0:
        day += timedelta(days=1)
        if calendar.is_working_day(day):
            left -= 1
    return datetime.combine(day, local.timetz())


# --- the workflow -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Context:
    """What the workflow checks a request against: principals by name and, per catalogued table, its sharing type
    and provider (``(sharing_type, provider)``)."""

    principals: Mapping[str, Principal]
    resources: Mapping[str, tuple[str, str]]


def submit(settings: Settings, ctx: Context, requester: str, resource: str, purpose: str, use_case: str,
           period_start: date, period_end: date, now: datetime | None = None) -> dict:
    """File a data request; returns its row.

    Raises:
        RequestError: unknown requester or resource; a 不予共享 resource (never shared outside its department);
            a 无条件共享 resource (no request needed); an empty purpose or use case; a period that ends before it
            starts or has already ended.
    """
    now = now or datetime.now(UTC)
    principal = ctx.principals.get(requester)
    if principal is None:
        raise RequestError(f"request by {requester!r}: not a user of the governance policy")
    if resource not in ctx.resources:
        raise RequestError(f"request for {resource!r}: not a catalogued resource")
    sharing, provider = ctx.resources[resource]
    if sharing == "not_shared":
        raise RequestError(f"request for {resource}: it is {SHARING_LABELS[sharing]} (not_shared) by {provider}, "
                           "never shared outside its department (《政务信息资源共享管理暂行办法》 art. 9); no request "
                           "can be filed")
    if sharing == "unconditional":
        raise RequestError(f"request for {resource}: it is {SHARING_LABELS[sharing]} (unconditional): readable "
                           "without a request")
    if not purpose.strip() or not use_case.strip():
        raise RequestError(f"request for {resource}: a purpose and a use case are required (art. 15)")
    if period_end < period_start or period_end < now.astimezone(LOCAL).date():
        raise RequestError(f"request for {resource}: period {period_start}..{period_end} is empty or over")
    with fsio.file_lock(_lock(settings)):
        row = {"request_id": _next_id("DR", read_table(settings, "requests"), "request_id", now),
               "requester": requester, "role": principal.role, "resource": resource, "purpose": purpose.strip(),
               "use_case": use_case.strip(), "period_start": period_start, "period_end": period_end,
               "submitted_at": now, "status": "submitted", "reviewer": None, "review_started_at": None,
               "decided_at": None, "decision_reason": None, "grant_id": None}
        _upsert(settings, "requests", [row])
        _upsert(settings, "grant_events", [_event(requester, "request", row, None, use_case.strip(), now)])
    return row


def _request(settings: Settings, request_id: str) -> dict:
    found = [r for r in read_table(settings, "requests") if r["request_id"] == request_id]
    if not found:
        raise RequestError(f"no data request {request_id}")
    return found[0]


def start_review(settings: Settings, request_id: str, reviewer: str, now: datetime | None = None) -> dict:
    """Take a submitted request into review (the 2-working-day step); returns the updated row.

    Raises:
        RequestError: no such request, or it is not ``submitted``.
    """
    now = now or datetime.now(UTC)
    with fsio.file_lock(_lock(settings)):
        row = _request(settings, request_id)
        if row["status"] != "submitted":
            raise RequestError(f"request {request_id} is {row['status']}, not submitted")
        row.update(status="under_review", reviewer=reviewer, review_started_at=now)
        _upsert(settings, "requests", [row])
        _upsert(settings, "grant_events", [_event(reviewer, "review", row, None, "", now)])
    return row


def decide(settings: Settings, request_id: str, reviewer: str, approve: bool, reason: str,
           now: datetime | None = None) -> dict:
    """Approve (creating a grant that expires at the end of the request's period) or refuse a request; returns the
    updated request row (``grant_id`` set when approved). A submitted request is taken into review first.

    Raises:
        RequestError: no such request; already decided; a refusal without a reason; the requester reviews own request.
    """
    now = now or datetime.now(UTC)
    if not approve and not reason.strip():
        raise RequestError(f"request {request_id}: a refusal needs a reason")
    with fsio.file_lock(_lock(settings)):
        row = _request(settings, request_id)
        if row["status"] not in ("submitted", "under_review"):
            raise RequestError(f"request {request_id} is already {row['status']}")
        if reviewer == row["requester"]:
            raise RequestError(f"request {request_id}: {reviewer} cannot review their own request")
        events = []
        if row["status"] == "submitted":
            row.update(reviewer=reviewer, review_started_at=now)
            events.append(_event(reviewer, "review", row, None, "", now))
        row.update(status="approved" if approve else "refused", reviewer=reviewer, decided_at=now,
                   decision_reason=reason.strip() or None)
        if approve:
            expires = datetime.combine(row["period_end"] + timedelta(days=1), time(0), LOCAL).astimezone(UTC)
            grant = {"grant_id": _next_id("G", read_table(settings, "grants"), "grant_id", now),
                     "request_id": request_id, "user": row["requester"], "role": row["role"],
                     "resource": row["resource"], "purpose": row["purpose"], "granted_by": reviewer,
                     "granted_at": now, "expires_at": expires, "revoked_at": None, "revoked_by": None,
                     "revoke_reason": None}
            row["grant_id"] = grant["grant_id"]
            _upsert(settings, "grants", [grant])
            events.append(_event(reviewer, "approve", row, grant["grant_id"], f"expires {expires.isoformat()}",
                                 now))
        else:
            events.append(_event(reviewer, "refuse", row, None, reason.strip(), now))
        _upsert(settings, "requests", [row])
        _upsert(settings, "grant_events", events)
    return row


def revoke(settings: Settings, grant_id: str, actor: str, reason: str, now: datetime | None = None) -> dict:
    """Revoke a grant (effective from the user's next statement); returns the grant row.

    Raises:
        RequestError: no such grant, already revoked, or no reason given.
    """
    now = now or datetime.now(UTC)
    if not reason.strip():
        raise RequestError(f"grant {grant_id}: a revocation needs a reason")
    with fsio.file_lock(_lock(settings)):
        found = [g for g in read_table(settings, "grants") if g["grant_id"] == grant_id]
        if not found:
            raise RequestError(f"no grant {grant_id}")
        grant = found[0]
        if grant["revoked_at"] is not None:
            raise RequestError(f"grant {grant_id} was already revoked at {grant['revoked_at']:%Y-%m-%d %H:%M}")
        grant.update(revoked_at=now, revoked_by=actor, revoke_reason=reason.strip())
        _upsert(settings, "grants", [grant])
        request = {"request_id": grant["request_id"], "requester": grant["user"], "resource": grant["resource"],
                   "purpose": grant["purpose"]}
        _upsert(settings, "grant_events", [_event(actor, "revoke", request, grant_id, reason.strip(), now)])
    return grant


def grants(settings: Settings) -> list[GrantInfo]:
    """Every grant (revoked and expired ones too: decisions name them) as :class:`GrantInfo`."""
    return [GrantInfo(g["grant_id"], g["user"], g["resource"], g["purpose"], g["expires_at"], g["revoked_at"])
            for g in read_table(settings, "grants")]


def overdue(settings: Settings, as_of: datetime | None = None) -> list[dict]:
    """Requests past a service level at ``as_of``: one dict per breach with ``request_id``, ``resource``,
    ``requester``, ``status``, ``step`` (``review``: not taken into review within 2 working days; ``reply``: not
    decided within 5), ``due`` (UTC instant) and ``late_by_hours`` (float). A step done late counts too (``done``
    is its instant, else None)."""
    as_of = as_of or datetime.now(UTC)
    out = []
    for row in sorted(read_table(settings, "requests"), key=lambda r: r["request_id"]):
        for step, days, done in (("review", REVIEW_WORKING_DAYS, row["review_started_at"]),
                                 ("reply", REPLY_WORKING_DAYS, row["decided_at"])):
            due = add_working_days(row["submitted_at"], days)
            end = done or as_of
            if end > due:
                out.append({"request_id": row["request_id"], "resource": row["resource"],
                            "requester": row["requester"], "status": row["status"], "step": step,
                            "due": due.astimezone(UTC), "done": done,
                            "late_by_hours": round((end - due).total_seconds() / 3600, 1)})
    return out
