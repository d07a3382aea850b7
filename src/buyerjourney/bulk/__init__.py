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
``_schema`` is the column schema and ``_columnar`` the columnar log;
``_batch`` is the batch entry point of distributed runs (:func:`replay_batch`,
:func:`replay_partition`: whole leads in, named columns out, an explicit
clock), ``_funnel`` the per-lead part of a distributed funnel report and
``_report`` the whole funnel report on a columnar log
(:func:`columnar_funnel_report`, also :meth:`Replay.funnel_report`), which
assembles its aggregates with ``_funnel``'s code.
"""

from buyerjourney.bulk._batch import (
    JOURNEY_FRAME_COLUMNS,
    RECORD_FRAME_COLUMNS,
    TOUCH_FIELDS,
    BatchNotInTimeOrder,
    BatchResult,
    InvalidBatch,
    LeadNotWhole,
    journeys_frame,
    records_frame,
    replay_batch,
    replay_partition,
)
from buyerjourney.bulk._columnar import (
    ColumnarLog,
    numpy_or_raise,
    stable_order,
    summarize_columnar,
)
from buyerjourney.bulk._funnel import DistributedFunnelReport, DistributedStepRow, DurationSummary
from buyerjourney.bulk._plan import Plan, plan
from buyerjourney.bulk._replay import JourneyStore, Mode, Replay, TouchBatch, replay
from buyerjourney.bulk._report import columnar_funnel_report
from buyerjourney.bulk._schema import EPOCH, KINDS, from_micros, to_micros

__all__ = [
    "EPOCH",
    "JOURNEY_FRAME_COLUMNS",
    "KINDS",
    "RECORD_FRAME_COLUMNS",
    "TOUCH_FIELDS",
    "BatchNotInTimeOrder",
    "BatchResult",
    "ColumnarLog",
    "DistributedFunnelReport",
    "DistributedStepRow",
    "DurationSummary",
    "InvalidBatch",
    "JourneyStore",
    "LeadNotWhole",
    "Mode",
    "Plan",
    "Replay",
    "TouchBatch",
    "columnar_funnel_report",
    "from_micros",
    "journeys_frame",
    "numpy_or_raise",
    "plan",
    "records_frame",
    "replay",
    "replay_batch",
    "replay_partition",
    "stable_order",
    "summarize_columnar",
    "to_micros",
]
