"""Bulk replay at memory speed: the ``fast`` extra (NumPy).

:func:`replay` replays a time-ordered batch of touches through a
:class:`~buyerjourney.Pipeline` and produces exactly the log and journeys
the engine would; :func:`plan` says which path it takes and why not a
faster one. Nothing in the core imports this package.

Inside: ``_plan`` decides which path a pipeline can take (exact component
types, limits of the dtypes) and is the only place that does;
``_kernels`` is the vectorised points arithmetic, a deliberate second
implementation of :class:`~buyerjourney.scoring.PointsScorer` held equal to
it by the differential tests; ``_replay`` is the vectorised lifecycle;
``_schema`` is the column schema and ``_columnar`` the columnar log.
"""

from buyerjourney.bulk._columnar import (
    ColumnarLog,
    numpy_or_raise,
    stable_order,
    summarize_columnar,
)
from buyerjourney.bulk._plan import Plan, plan
from buyerjourney.bulk._replay import JourneyStore, Mode, Replay, TouchBatch, replay
from buyerjourney.bulk._schema import EPOCH, KINDS, from_micros, to_micros

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
