"""Reading touches from JSON Lines, CSV, Parquet and CRM stage-history exports.

This is the public face of the readers; the implementation lives in a
private module. See the readers how-to (``docs/howto/readers.md``) for the
column mapping, the limits and the quarantine codes.

Example::

    from buyerjourney.readers import Columns, Constant, read

    columns = Columns(lead="email", time="signed_up", kind=Constant("signup"),
                      touch_id=None, time_zone="Europe/Paris")
    for location, item in read("signups.csv", columns=columns):
        ...
"""

from buyerjourney._adapters.readers import (
    DEFAULT_IMPORTER,
    FORMATS,
    MAX_CSV_RECORD_LINES,
    MAX_DEPTH,
    MAX_INT_DIGITS,
    MAX_RECORD_BYTES,
    MAX_TEXT_CHARS,
    ORDER_LIMIT,
    PARQUET_BATCH_ROWS,
    REJECT_CODES,
    Columns,
    Constant,
    InvalidMapping,
    Location,
    Rejected,
    StageColumns,
    UnreadableRecord,
    UnreadableSource,
    ValueMap,
    columns_from_dict,
    importer_rules,
    in_time_order,
    load_columns,
    load_stage_columns,
    read,
    read_stage_history,
    read_stream,
    stage_columns_from_dict,
)

__all__ = [
    "DEFAULT_IMPORTER",
    "FORMATS",
    "MAX_CSV_RECORD_LINES",
    "MAX_DEPTH",
    "MAX_INT_DIGITS",
    "MAX_RECORD_BYTES",
    "MAX_TEXT_CHARS",
    "ORDER_LIMIT",
    "PARQUET_BATCH_ROWS",
    "REJECT_CODES",
    "Columns",
    "Constant",
    "InvalidMapping",
    "Location",
    "Rejected",
    "StageColumns",
    "UnreadableRecord",
    "UnreadableSource",
    "ValueMap",
    "columns_from_dict",
    "importer_rules",
    "in_time_order",
    "load_columns",
    "load_stage_columns",
    "read",
    "read_stage_history",
    "read_stream",
    "stage_columns_from_dict",
]
