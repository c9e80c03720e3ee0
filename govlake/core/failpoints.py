"""Failpoints: named places in the pipeline where a fault-injection run kills its own process.

Production code calls :func:`failpoint` at the places where a crash is most likely to leave a half-done state
(between a Delta commit and the ledger write, inside a MERGE, between the commits of the unified layer, ...). It
costs one dictionary lookup and does nothing unless ``GOVLAKE_FAILPOINTS`` names the point (the technique of
FreeBSD's fail(9), etcd's gofail and TiKV's fail-rs). The fault-injection tests (``tests/test_faults.py``) and the
soak command (``benchmarks/soak.py``) set it on a child process, then rerun the stage and compare every table with
an uninterrupted run.

``GOVLAKE_FAILPOINTS``: comma-separated ``<name>[@<hit>][=<action>]``:

* ``name``: one of :data:`FAILPOINTS`;
* ``hit``: fire on the hit-th time the point is reached in this process (default 1);
* ``action``: ``kill`` (default: SIGKILL to the whole process group, the Spark JVM included, as a power cut
  would), ``kill-after:<seconds>`` (arm a timer and go on: the kill lands inside the work that follows, e.g. a
  MERGE), ``pause:<seconds>`` (sleep: a test stops a server or truncates a file meanwhile), or ``raise`` (raise
  :class:`InjectedFault`, for in-process tests of error paths).
"""
from __future__ import annotations

import os
import signal
import threading
import time

from govlake.core import config

#: Every failpoint: name -> where it is.
FAILPOINTS = {
    "extract.reading": "a source is being read: its window counted (PostgreSQL), its first document read "
                       "(MongoDB), its manifest read (file drop)",
    "extract.after_raw_write": "a raw batch is committed to Delta, its ledger row is not written yet",
    "extract.after_ledger": "the ledger rows of the run's batches are written",
    "validate.after_staging": "a table's staging partition is committed, its quarantine partition is not",
    "validate.after_table": "a table is published (staging + quarantine), the results of the stage are not",
    "unify.merge": "a unified table's MERGE or rewrite starts (use kill-after to land inside it)",
    "unify.after_table": "a unified table is committed, the next one is not",
    "unify.before_publication": "every unified table is committed, the run's publication is not recorded",
    "marts.after_table": "a mart table is written, the next one is not",
    "analysis.before_report": "the analysis tables are written, the report is not",
}
ENV = config.FAILPOINTS_VAR


class InjectedFault(RuntimeError):
    """Raised by a failpoint whose action is ``raise``."""


_hits: dict[str, int] = {}
_lock = threading.Lock()
#: How many times each failpoint was reached in this process (counted whether or not any is armed): the soak
#: command draws its kill points among the hits an uninterrupted run made.
reached: dict[str, int] = {}


def parse(spec: str) -> dict[str, tuple[int, str]]:
    """``GOVLAKE_FAILPOINTS`` as ``{name: (hit, action)}``.

    Raises:
        ValueError: an unknown failpoint name, a hit that is not a positive integer, or an unknown action.
    """
    out: dict[str, tuple[int, str]] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        head, _, action = part.partition("=")
        name, _, hit = head.partition("@")
        if name not in FAILPOINTS:
            raise ValueError(f"{ENV}: unknown failpoint {name!r}; known: {', '.join(FAILPOINTS)}")
        if hit and (not hit.isdigit() or int(hit) < 1):
            raise ValueError(f"{ENV}: hit of {name} must be a positive integer, not {hit!r}")
        action = action or "kill"
        timed = action.split(":", 1)
        if not (action in ("kill", "raise") or (timed[0] in ("kill-after", "pause") and len(timed) == 2
                                                 and timed[1].replace(".", "", 1).isdigit())):
            raise ValueError(f"{ENV}: action of {name} must be kill, kill-after:<seconds>, pause:<seconds> or raise, "
                             f"not {action!r}")
        out[name] = (int(hit or 1), action)
    return out


def kill_process_group() -> None:
    """SIGKILL this process and the Spark JVM it started: the whole process group when this process leads it
    (a run started in its own session), else this process and its children."""
    if os.getpgid(0) == os.getpid():
        os.killpg(os.getpid(), signal.SIGKILL)
    import psutil

    for child in psutil.Process().children(recursive=True):
        child.kill()
    os.kill(os.getpid(), signal.SIGKILL)


def reset() -> None:
    """Forget the hits counted so far (an in-process test that arms a failpoint again starts from hit 1)."""
    with _lock:
        _hits.clear()


def failpoint(name: str) -> None:
    """Reach the failpoint ``name``: act when ``GOVLAKE_FAILPOINTS`` names it and this is the chosen hit.

    Raises:
        InjectedFault: the action is ``raise``.
        ValueError: ``GOVLAKE_FAILPOINTS`` is malformed (see :func:`parse`).
    """
    reached[name] = reached.get(name, 0) + 1
    spec = config.failpoints_spec()
    if not spec:
        return
    chosen = parse(spec).get(name)
    if chosen is None:
        return
    with _lock:
        _hits[name] = _hits.get(name, 0) + 1
        if _hits[name] != chosen[0]:
            return
    action = chosen[1]
    if action == "raise":
        raise InjectedFault(f"failpoint {name} (hit {chosen[0]})")
    if action == "kill":
        kill_process_group()
    delay = float(action.split(":", 1)[1])
    if action.startswith("pause:"):
        time.sleep(delay)
        return
    timer = threading.Timer(delay, kill_process_group)
    timer.daemon = True
    timer.start()
