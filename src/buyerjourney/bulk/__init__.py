"""Bulk replay at memory speed: the ``fast`` extra (NumPy).

:func:`replay` replays a time-ordered batch of touches through a
:class:`~buyerjourney.Pipeline` and produces exactly the log and journeys
the engine would; :func:`plan` says which path it takes and why not a
faster one. Nothing in the core imports this package.
"""

from buyerjourney.bulk._columnar import (
    EPOCH,
    KINDS,
    ColumnarLog,
    from_micros,
    numpy_or_raise,
    stable_order,
    summarize_columnar,
    to_micros,
)
from buyerjourney.bulk._replay import JourneyStore, Mode, Plan, Replay, TouchBatch, plan, replay

__all__ = [
    "EPOCH",
    "KINDS",
    "ColumnarLog",
    "JourneyStore",
    "Mode",
    "Plan",
    "Replay",
    "TouchBatch",
    "from_micros",
    "numpy_or_raise",
    "plan",
    "replay",
    "stable_order",
    "summarize_columnar",
    "to_micros",
]
