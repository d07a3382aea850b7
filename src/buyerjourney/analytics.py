"""Analytics computed from the log: the funnel report, handoff metrics and the predictive score.

This is the public face of the analytics; the implementation lives in a
private package. Every report is computed from records and the funnel only,
as of any date (records dated after it are ignored), and is a frozen value
with ``to_dict()`` (JSON-ready) and ``format()`` (plain text):

* :func:`funnel_report` — per step of a path: entered, exited (and to where),
  balance, step and overall conversion, drop-off, time to convert, time in
  stage (velocity); with a conversion window and an order mode. Cohort-based.
* :func:`funnel_breakdown` and :func:`funnel_cohorts` — the same report per
  value of a lead property (first- or last-touch) or per entry week or month.
* :func:`handoff_report` — handoffs, acceptance rate, time to accept, SLA
  breaches, rejections and recycles with their reasons, workload per team
  and per person. Period-based.
* :class:`PredictiveModel` — naive Bayes over won and lost leads, with the
  top factors of every prediction; also a scorer.

See :doc:`the reports how-to <howto/reports>` and :doc:`the predictive
how-to <howto/predictive>` for the definitions.
"""

from buyerjourney._analytics._stats import BUCKETS, Durations
from buyerjourney._analytics.funnel import (
    ATTRIBUTIONS,
    BRANCH_KINDS,
    COHORT_BASIS,
    ORDERS,
    PERIODS,
    Attribution,
    Branch,
    Breakdown,
    BreakdownGroup,
    Cohort,
    Cohorts,
    FunnelReport,
    Order,
    Period,
    StepRow,
    funnel_breakdown,
    funnel_cohorts,
    funnel_report,
)
from buyerjourney._analytics.handoffs import (
    PERIOD_BASIS,
    ActorLoad,
    HandoffReport,
    HandoffRoute,
    Recycle,
    TeamLoad,
    handoff_report,
)
from buyerjourney._analytics.predictive import (
    SMOOTHING,
    Factor,
    Prediction,
    PredictiveModel,
    ValueCount,
    training_examples,
)

__all__ = [
    "ATTRIBUTIONS",
    "BRANCH_KINDS",
    "BUCKETS",
    "COHORT_BASIS",
    "ORDERS",
    "PERIODS",
    "PERIOD_BASIS",
    "SMOOTHING",
    "ActorLoad",
    "Attribution",
    "Branch",
    "Breakdown",
    "BreakdownGroup",
    "Cohort",
    "Cohorts",
    "Durations",
    "Factor",
    "FunnelReport",
    "HandoffReport",
    "HandoffRoute",
    "Order",
    "Period",
    "Prediction",
    "PredictiveModel",
    "Recycle",
    "StepRow",
    "TeamLoad",
    "ValueCount",
    "funnel_breakdown",
    "funnel_cohorts",
    "funnel_report",
    "handoff_report",
    "training_examples",
]
