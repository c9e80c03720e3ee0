"""The run log: every log line of a run names its run id, logical date and stage, and every table write logs one
line with the table, the rows written and the seconds it took.

* :func:`run_context` (set by ``govlake.pipeline.run_stage`` and ``run_all``) holds ``run_id``, ``logical_date`` and
  ``stage`` in a context variable (so threads started with a copied context, and each asyncio task, keep their own).
* :func:`install` sets a log record factory that copies them onto every record created through ``logging``
  (attributes ``run_id``, ``logical_date``, ``stage``; ``-`` outside a run). Records made another way (a third-party
  handler building ``logging.LogRecord`` itself) lack them: :class:`RunFormatter` then prints ``-``, and
  :class:`ContextFilter` (for a handler of its own) adds them; neither fails on such a record. The factory also
  scrubs ID and mobile numbers from the message and traceback (issue #21, :mod:`govlake.governance.masking`).
* :func:`log_write` / :func:`timed_write` log one line per table write (``govlake.core.lake``'s write helpers, raw
  batch writes of ``govlake.extract.raw``), with the record attributes ``operation``, ``table``, ``path``,
  ``rows`` and ``seconds`` for machine readers.

A line, as :data:`FORMAT` prints it::

    2025-07-01 00:03:12,044 INFO [run=3f2a… date=2025-06-30 stage=validate] govlake.core.lake: replace_partition \
staging.hukou_persons rows=1987 seconds=2.418
"""
from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import PurePosixPath

#: Logger of the write lines.
LOG = logging.getLogger("govlake.runlog")
#: Attributes the factory adds to every record.
FIELDS = ("run_id", "logical_date", "stage")
#: Shown for a field outside a run (or on a record that lacks it).
MISSING = "-"
#: The log line: time, level, run prefix, logger, message.
FORMAT = "%(asctime)s %(levelname)s [run=%(run_id)s date=%(logical_date)s stage=%(stage)s] %(name)s: %(message)s"

_CONTEXT: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("govlake_run_context", default=None)


def current() -> dict[str, str]:
    """``{"run_id", "logical_date", "stage"}`` of the run under way in this context (``-`` for what is unset)."""
    ctx = _CONTEXT.get() or {}
    return {f: ctx.get(f, MISSING) for f in FIELDS}


@contextmanager
def run_context(run_id: str | None = None, logical_date: object = None, stage: str | None = None) -> Iterator[None]:
    """Name the run for every log record created inside the ``with`` block (in this context). Arguments left None
    keep the enclosing context's value (e.g. a stage inside :func:`run_context` of a whole run)."""
    outer = _CONTEXT.get() or {}
    given = {"run_id": run_id, "logical_date": None if logical_date is None else str(logical_date), "stage": stage}
    token = _CONTEXT.set({**outer, **{k: v for k, v in given.items() if v is not None}})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def _add_fields(record: logging.LogRecord) -> logging.LogRecord:
    ctx = _CONTEXT.get() or {}
    for f in FIELDS:
        if not hasattr(record, f):
            setattr(record, f, ctx.get(f, MISSING))
    return record


class ContextFilter(logging.Filter):
    """Adds ``run_id``, ``logical_date`` and ``stage`` to a record that lacks them (never drops a record)."""

    def filter(self, record: logging.LogRecord) -> bool:
        _add_fields(record)
        return True


class RunFormatter(logging.Formatter):
    """:data:`FORMAT`; a record without the run fields (made outside the factory) prints ``-`` for them."""

    def __init__(self, fmt: str = FORMAT, datefmt: str | None = None) -> None:
        super().__init__(fmt, datefmt, defaults=dict.fromkeys(FIELDS, MISSING))


_INSTALLED: list = []


def install() -> None:
    """Set the log record factory that adds the run fields to every record and scrubs its message and traceback of
    ID and mobile numbers (:func:`govlake.governance.masking.scrub_record`, issue #21) (idempotent; wraps the
    factory in place before, so another library's factory keeps working)."""
    if _INSTALLED:
        return
    previous = logging.getLogRecordFactory()

    from govlake.governance.masking import scrub_record

    def factory(*args, **kwargs) -> logging.LogRecord:
        # issue #21: no ID or mobile number in clear in any log line, whatever handler (Airflow's task log) prints it
        return scrub_record(_add_fields(previous(*args, **kwargs)))

    _INSTALLED.append(previous)
    logging.setLogRecordFactory(factory)


def configure(level: int = logging.INFO) -> None:
    """For command-line runs: :func:`install`, and when the root logger has no handler, one on stderr with
    :class:`RunFormatter` at ``level`` (existing handlers, e.g. Airflow's, are left as they are)."""
    install()
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(RunFormatter())
        handler.addFilter(ContextFilter())
        root.addHandler(handler)
        root.setLevel(level)
    logging.getLogger("govlake").setLevel(level)


def table_name(path: str) -> str:
    """``<layer>.<table>`` of a table path (its last two path parts, e.g. ``.../unified/person`` ->
    ``unified.person``); a path with one part is returned as it is."""
    parts = PurePosixPath(str(path).rstrip("/")).parts
    return ".".join(parts[-2:]) if len(parts) >= 2 else str(path)


def log_write(operation: str, path: str, rows: int | None, seconds: float, **details: object) -> None:
    """Log one table write at INFO: ``<operation> <layer.table> rows=<n> seconds=<s>`` plus ``key=value`` for each
    of ``details`` (e.g. ``inserted``, ``updated``, ``skipped``). ``rows`` None: not known (printed ``?``)."""
    extra = " ".join(f"{k}={v}" for k, v in details.items())
    table = table_name(path)
    LOG.info("%s %s rows=%s seconds=%.3f%s", operation, table, "?" if rows is None else rows, seconds,
             f" {extra}" if extra else "",
             extra={"operation": operation, "table": table, "path": str(path), "rows": rows,
                    "seconds": round(seconds, 3), **{f"write_{k}": v for k, v in details.items()}})


@dataclass
class _Write:
    rows: int | None = None
    details: dict | None = None


@contextmanager
def timed_write(operation: str, path: str) -> Iterator[_Write]:
    """Time the ``with`` block and then :func:`log_write` it with the ``rows`` (and ``details``) the block set on
    the yielded object. Nothing is logged when the block raises (the error is logged by whoever handles it)."""
    started = time.monotonic()
    write = _Write()
    yield write
    log_write(operation, path, write.rows, time.monotonic() - started, **(write.details or {}))


@contextmanager
def stage_step(stage: str) -> Iterator[None]:
    """Log the start and the end (with seconds, or the error's type) of a stage step at INFO."""
    started = time.monotonic()
    LOG.info("stage %s started", stage, extra={"operation": "stage"})
    try:
        yield
    except BaseException as exc:
        LOG.info("stage %s failed seconds=%.3f error=%s", stage, time.monotonic() - started, type(exc).__name__,
                 extra={"operation": "stage", "seconds": round(time.monotonic() - started, 3)})
        raise
    LOG.info("stage %s finished seconds=%.3f", stage, time.monotonic() - started,
             extra={"operation": "stage", "seconds": round(time.monotonic() - started, 3)})
