"""The fault manifest (``<sources>/truth/faults.csv``): the format a generator of test sources writes and
:mod:`govlake.quality.audit` scores the quality gate against. Defined here, on the consumer's side, so that no
production module imports the generator.
"""
from __future__ import annotations

#: Columns of the manifest, one row per injected fault.
FAULT_COLUMNS = ("source", "table", "row_key", "column", "fault_kind", "original_value", "delivered_value",
                 "row_locator")
#: Manifest columns that are not one delivered column → the delivered columns they stand for, per (source, table).
#: A fault on such a pseudo-column damages exactly those columns (``govlake.quality.audit`` attributes it to rules on
#: them).
PSEUDO_COLUMNS: dict[tuple[str, str], dict[str, tuple[str, ...]]] = {
    ("address", "standard_address"): {"coordinates": ("lng", "lat")},
}
