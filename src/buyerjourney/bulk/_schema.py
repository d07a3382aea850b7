"""The column schema of the bulk path, in one place: record kind codes, columns, dtypes, time.

Both the columnar log written by :func:`buyerjourney.bulk.replay` and the one
:meth:`ColumnarLog.from_records <buyerjourney.bulk.ColumnarLog.from_records>`
builds, and the journey columns of :class:`~buyerjourney.bulk.JourneyStore`,
take their names, codes and dtypes from here.

Code columns (stages, teams, events ...) use the narrowest signed integer
dtype that holds every code and ``-1`` ("none"): ``int8`` for a funnel of up
to 127 stages, ``int16`` beyond, and so on (:func:`code_dtype`), so no code
is ever cut to fit its column.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from buyerjourney._core.records import RecordKind

Array = Any
"""A NumPy array (NumPy is optional, so arrays are typed loosely)."""

__all__ = [
    "EPOCH",
    "JOURNEY_COLUMNS",
    "KINDS",
    "KIND_CODE",
    "LOG_COLUMNS",
    "MICROSECOND",
    "code_dtype",
    "from_micros",
    "journey_dtypes",
    "log_dtypes",
    "new_log_columns",
    "to_micros",
]

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
"""Time zero of the microsecond columns (UTC)."""

MICROSECOND = timedelta(microseconds=1)
"""The unit of every time column."""

KINDS: tuple[RecordKind, ...] = tuple(RecordKind)
"""Record kinds by their code in the ``kind`` column."""

KIND_CODE: dict[RecordKind, int] = {kind: i for i, kind in enumerate(KINDS)}
"""The code of each record kind in the ``kind`` column."""

# The code of each record kind, by name, for the writers and readers of the log.
CREATED = KIND_CODE[RecordKind.CREATED]
SCORED = KIND_CODE[RecordKind.SCORED]
THRESHOLD = KIND_CODE[RecordKind.THRESHOLD]
TRANSITION = KIND_CODE[RecordKind.TRANSITION]
OVERRIDE = KIND_CODE[RecordKind.OVERRIDE]
HANDOFF = KIND_CODE[RecordKind.HANDOFF]
ESCALATION = KIND_CODE[RecordKind.ESCALATION]
REFUSED = KIND_CODE[RecordKind.REFUSED]
ACCEPTED = KIND_CODE[RecordKind.ACCEPTED]
REJECTED = KIND_CODE[RecordKind.REJECTED]

LOG_COLUMNS: tuple[str, ...] = (
    "kind", "lead", "at", "touch", "source", "target", "from_team", "to_team",
    "event", "score", "aux",
)  # fmt: skip
"""The columns of a columnar log, in order."""

JOURNEY_COLUMNS: tuple[str, ...] = (
    "stage", "highest", "owner", "score", "version", "pending", "escalated",
    "created", "updated", "entered",
)  # fmt: skip
"""The columns of a journey store, in order."""


def code_dtype(np: Any, count: int, *, at_least: Any = None) -> Any:
    """The narrowest signed integer dtype that holds the codes ``0 .. count - 1`` and ``-1``.

    Args:
        np: The NumPy module.
        count: How many codes there are (or the largest value plus one).
        at_least: A dtype the result is never narrower than.

    Returns:
        ``int8``, ``int16``, ``int32`` or ``int64``.

    Raises:
        OverflowError: Not even ``int64`` holds the codes.
    """
    floor = np.dtype(at_least).itemsize if at_least is not None else 1
    for dtype in (np.int8, np.int16, np.int32, np.int64):
        if np.dtype(dtype).itemsize >= floor and count - 1 <= int(np.iinfo(dtype).max):
            return np.dtype(dtype)
    msg = f"{count} codes do not fit in 64 bits"
    raise OverflowError(msg)


def log_dtypes(
    np: Any, *, leads: int, touches: int, stages: int, teams: int, events: int, aux: int
) -> dict[str, Any]:
    """The dtype of each log column, for a log with that many of each kind of code.

    Args:
        np: The NumPy module.
        leads: Lead codes (``lead``).
        touches: Touch positions (``touch``).
        stages: Stage codes (``source``, ``target``).
        teams: Team codes (``from_team``, ``to_team``).
        events: Event codes (``event``).
        aux: The largest ``aux`` value plus one (refusal reasons, threshold
            indices, touch positions).

    Returns:
        The dtypes by column name, in :data:`LOG_COLUMNS` order.
    """
    stage = code_dtype(np, stages)
    team = code_dtype(np, teams)
    return {
        "kind": code_dtype(np, len(KINDS)),
        "lead": code_dtype(np, leads, at_least=np.int32),
        "at": np.dtype(np.int64),
        "touch": code_dtype(np, touches, at_least=np.int32),
        "source": stage,
        "target": stage,
        "from_team": team,
        "to_team": team,
        "event": code_dtype(np, events, at_least=np.int16),
        "score": np.dtype(np.float64),
        "aux": code_dtype(np, aux, at_least=np.int32),
    }


def new_log_columns(np: Any, n: int, dtypes: dict[str, Any], *, kind: int) -> dict[str, Array]:
    """Columns for *n* records: *kind* everywhere, codes ``-1``, scores NaN.

    ``lead``, ``at`` and ``touch`` are left uninitialised: the writer sets them
    on every row.

    Args:
        np: The NumPy module.
        n: The number of records.
        dtypes: From :func:`log_dtypes`.
        kind: The record kind code to fill ``kind`` with.

    Returns:
        The arrays by column name, in :data:`LOG_COLUMNS` order.
    """
    columns: dict[str, Array] = {}
    for name in LOG_COLUMNS:
        dtype = dtypes[name]
        if name == "kind":
            columns[name] = np.full(n, kind, dtype)
        elif name in ("lead", "at", "touch"):
            columns[name] = np.empty(n, dtype)
        elif name == "score":
            columns[name] = np.full(n, np.nan, dtype)
        else:
            columns[name] = np.full(n, -1, dtype)
    return columns


def journey_dtypes(np: Any, *, stages: int, teams: int, records: int) -> dict[str, Any]:
    """The dtype of each journey column.

    Args:
        np: The NumPy module.
        stages: Stage codes (``stage``, ``highest``).
        teams: Team codes (``owner``).
        records: The most records a journey can have (``version``).

    Returns:
        The dtypes by column name, in :data:`JOURNEY_COLUMNS` order.
    """
    stage = code_dtype(np, stages)
    return {
        "stage": stage,
        "highest": stage,
        "owner": code_dtype(np, teams),
        "score": np.dtype(np.float64),
        "version": code_dtype(np, records + 1, at_least=np.int32),
        "pending": np.dtype(bool),
        "escalated": np.dtype(bool),
        "created": np.dtype(np.int64),
        "updated": np.dtype(np.int64),
        "entered": np.dtype(np.int64),
    }


def to_micros(at: datetime) -> int:
    """Microseconds since :data:`EPOCH` of an aware datetime.

    Args:
        at: A timezone-aware datetime.

    Returns:
        The time as an integer number of microseconds.
    """
    return (at - EPOCH) // MICROSECOND


def from_micros(value: int) -> datetime:
    """The UTC datetime *value* microseconds after :data:`EPOCH`.

    Args:
        value: Microseconds since the epoch.

    Returns:
        The time, in UTC.
    """
    return EPOCH + timedelta(microseconds=int(value))
