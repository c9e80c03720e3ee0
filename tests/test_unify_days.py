"""Issue #6, "Done when": running day N+1 through the unified layer updates only what changed, and a person who
moved (the household registry's 户口迁移登记 of the generator's day N+1) has two residence rows — the day N one
closed on day N+1, the new one current from day N+1. Embedded sources (SQLite / JSON lines), 40 residents.

The two days run in a background process of their own (``tests/unify_days_job.py``, the ``unify_days`` fixture,
started right after collection): the test asserts on what it recorded."""
from __future__ import annotations

import datetime as dt

import pytest

DAY = "2025-06-30"
NEXT = (dt.date.fromisoformat(DAY) + dt.timedelta(days=1)).isoformat()


@pytest.mark.slow
def test_day_n_plus_1_moves_a_person_and_changes_only_the_persons_it_names(unify_days):
    before = {tuple(r) for r in unify_days["before"]}
    after = {tuple(r) for r in unify_days["after"]}
    person_of = {key: pid for key, pid, _ in unify_days["links"]}
    movers = {person_of[f"hukou:persons:{c['person_key']}"] for c in unify_days["changes"]
              if c["change_kind"] == "move" and c["table"] == "residence_changes"}
    assert movers, "the sample moves at least one household on day N+1"
    for pid in movers:
        rows = sorted((r for r in after if r[0] == pid), key=lambda r: r[3])
        assert len(rows) == 2, rows
        (old, new) = rows
        assert (old[3], old[4], old[5]) == (DAY, NEXT, False)   # closed on day N+1 (valid_to exclusive)
        assert (new[3], new[4], new[5]) == (NEXT, None, True)
        assert (old[1], old[2]) != (new[1], new[2])              # a different community or address
    # nothing else: every residence row that changed belongs to a person with a record delivered on day N+1
    changed = {r[0] for r in before ^ after}
    delivered = {pid for _, pid, batch_date in unify_days["links"] if batch_date == NEXT}
    assert movers <= changed <= delivered
    assert len(delivered) < len(set(person_of.values()))  # day N+1 is not a full reload
    assert unify_days["second_residence"]["inserted"] >= len(movers)
