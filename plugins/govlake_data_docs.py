"""Airflow 3 plugin: a "Data Docs" extra link on every ``validate_<source>`` task of ``govlake_daily`` and on its
``data_docs`` task (which builds the site once after them; it returns ``[{"data_docs": "<index.html>"}]``).

Mechanism (Airflow 3 "add links to existing operators"): the link class names the operator class of ``@task``
tasks (``_PythonDecoratedOperator``) in ``operators``; the API server attaches it when it deserialises the DAG and
calls :meth:`DataDocsLink.get_link` when the task's page is opened. The link is read from the task's own XCom
``return_value`` — the validate stage returns ``[{"table", "quarantined", ..., "data_docs": "<path of the GX Data
Docs index.html>", "data_docs_page": "<path of this batch's validation page on the site>"}, ...]`` — so the DAG
file needs no change and the worker pushes nothing extra. A validate task links to its own batch's validation
page (of a source with several tables: the first table with quarantined rows, else the first table); the
``data_docs`` task to the site's index. Other tasks, and validate runs without Data Docs, get an empty (disabled)
link.

The Data Docs site is static HTML under ``$GOVLAKE_HOME/reports/gx/uncommitted/data_docs/local_site/``. Browsers
do not open ``file://`` links from an ``http://`` page, so set ``GOVLAKE_DATA_DOCS_BASE_URL`` (in the API server's
environment) to the URL where the reports folder is served (e.g. ``http://reports.internal/govlake``): the link
becomes ``<base>/gx/uncommitted/data_docs/local_site/<page>``. Without it the link is the ``file://`` URI.
``docker/platform.sh`` serves the reports folder (govlake.serve.reports_http) and sets the variable.

Parse-time cost: Airflow modules only (no pyspark, GX, pandas or ``govlake``).
"""
from __future__ import annotations

import json
import os
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import quote

from airflow.plugins_manager import AirflowPlugin
from airflow.providers.standard.decorators.python import _PythonDecoratedOperator
from airflow.sdk import BaseOperatorLink

#: Environment variable: URL under which ``$GOVLAKE_HOME/reports`` is served over HTTP.
BASE_URL_ENV = "GOVLAKE_DATA_DOCS_BASE_URL"
#: Task ids that get the link: the validate tasks (their checkpoints' site) and the task that builds the site.
VALIDATE_PREFIX = "validate_"
DATA_DOCS_TASK = "data_docs"


def data_docs_url(value: Any, base_url: str | None = None) -> str:
    """The Data Docs URL from a validate task's return value.

    Args:
        value: the XCom ``return_value`` of a validate task: a list of dicts with a ``data_docs_page`` and/or
            ``data_docs`` path (or its JSON text); anything else gives ''.
        base_url: URL serving the reports folder (see the module docstring); None → a ``file://`` URI.

    Returns:
        the URL of a batch's own validation page (``data_docs_page``: of the first table with quarantined rows,
        else of the first table), else of the first non-empty ``data_docs`` path (the site's index: all tables
        of a run share one site); '' when there is none.
    """
    if isinstance(value, (str, bytes)):
        try:
            value = json.loads(value)
        except ValueError:
            return ""
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        return ""
    items = [v for v in value if isinstance(v, dict)]
    pages = [v for v in items if v.get("data_docs_page")]
    flagged = [v for v in pages if (v.get("quarantined") or 0) > 0]
    path = ((flagged or pages)[0]["data_docs_page"] if pages
            else next((v["data_docs"] for v in items if v.get("data_docs")), None))
    if not path:
        return ""
    posix = PurePosixPath(str(path))
    if base_url and "gx" in posix.parts:
        rel = PurePosixPath(*posix.parts[posix.parts.index("gx"):])
        return f"{base_url.rstrip('/')}/{quote(str(rel))}"
    return "file://" + quote(str(posix))


def _return_value(ti_key) -> Any:
    """The XCom ``return_value`` of a task instance, read from the metadata database (API server side)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.execute(
            XComModel.get_many(key="return_value", run_id=ti_key.run_id, dag_ids=ti_key.dag_id,
                               task_ids=ti_key.task_id, map_indexes=ti_key.map_index)
            .with_only_columns(XComModel.value)
        ).first()
    return None if row is None else row.value


class DataDocsLink(BaseOperatorLink):
    """Extra link "Data Docs" of the ``validate_<source>`` tasks (Great Expectations Data Docs of the run)."""

    name = "Data Docs"
    operators = [_PythonDecoratedOperator]

    def get_link(self, operator, *, ti_key) -> str:
        """URL of the run's Data Docs (see :func:`data_docs_url`); '' for other tasks or when not built."""
        if not (str(ti_key.task_id).startswith(VALIDATE_PREFIX) or str(ti_key.task_id) == DATA_DOCS_TASK):
            return ""
        return data_docs_url(_return_value(ti_key), os.environ.get(BASE_URL_ENV))


class GovLakeDataDocsPlugin(AirflowPlugin):
    """Registers :class:`DataDocsLink`."""

    name = "govlake_data_docs"
    operator_extra_links = [DataDocsLink()]
