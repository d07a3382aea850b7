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
* :func:`backtest` — replay past touches under candidate handoff policies
  (:func:`threshold_candidates`, :func:`matrix_candidate`,
  :func:`predictive_candidates`, your own :class:`PolicyCandidate`) against
  known :class:`Outcomes`: precision, recall, timing and weekly workload of
  each, the best by an objective, and the precision/recall curve.
* :func:`simulate` — seeded synthetic streams of touches and actions for any
  funnel; :func:`forecast` — a Monte Carlo forecast of conversions per week,
  with intervals, from rates and durations estimated from a log.

Every report and result has ``to_pandas(table=None)`` and
``to_arrow(table=None)`` (the ``frames`` and ``arrow`` extras); Polars reads
the Arrow tables with ``polars.from_arrow``.

See the how-tos on reports, the predictive score, backtests, and simulation
and forecasts for the definitions.
"""

from buyerjourney._analytics._stats import BUCKETS, Durations
from buyerjourney._analytics.backtest import (
    CANDIDATE_KINDS,
    OBJECTIVES,
    Backtest,
    CandidateResult,
    CurvePoint,
    Objective,
    Outcomes,
    PolicyCandidate,
    ScoreThresholdPolicy,
    WithoutEvent,
    as_objective,
    backtest,
    handoff_event,
    handoff_stage,
    handoff_times,
    matrix_candidate,
    precision_at_recall,
    predictive_candidates,
    threshold_candidates,
)
from buyerjourney._analytics.charts import (
    CHART_FORMATS,
    CHART_KINDS,
    BacktestPoint,
    Chart,
    backtest_chart,
    backtest_points,
    cohort_chart,
    flow_chart,
    funnel_chart,
    handoff_chart,
    time_in_stage_chart,
)
from buyerjourney._analytics.forecast import (
    Forecast,
    ForecastWeek,
    StepEstimate,
    estimate_steps,
    forecast,
)
from buyerjourney._analytics.frames import COLUMN_TYPES, Table, Tabular
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
from buyerjourney._analytics.html import render_html, write_html
from buyerjourney._analytics.predictive import (
    SMOOTHING,
    Factor,
    Prediction,
    PredictiveModel,
    ValueCount,
    training_examples,
)
from buyerjourney._analytics.simulate import (
    DEFAULT_ATTRIBUTES,
    DEFAULT_DURATIONS,
    DEFAULT_RATES,
    DEFAULT_TOUCH_MIX,
    Simulation,
    simulate,
)

__all__ = [
    "ATTRIBUTIONS",
    "BRANCH_KINDS",
    "BUCKETS",
    "CANDIDATE_KINDS",
    "CHART_FORMATS",
    "CHART_KINDS",
    "COHORT_BASIS",
    "COLUMN_TYPES",
    "DEFAULT_ATTRIBUTES",
    "DEFAULT_DURATIONS",
    "DEFAULT_RATES",
    "DEFAULT_TOUCH_MIX",
    "OBJECTIVES",
    "ORDERS",
    "PERIODS",
    "PERIOD_BASIS",
    "SMOOTHING",
    "ActorLoad",
    "Attribution",
    "Backtest",
    "BacktestPoint",
    "Branch",
    "Breakdown",
    "BreakdownGroup",
    "CandidateResult",
    "Chart",
    "Cohort",
    "Cohorts",
    "CurvePoint",
    "Durations",
    "Factor",
    "Forecast",
    "ForecastWeek",
    "FunnelReport",
    "HandoffReport",
    "HandoffRoute",
    "Objective",
    "Order",
    "Outcomes",
    "Period",
    "PolicyCandidate",
    "Prediction",
    "PredictiveModel",
    "Recycle",
    "ScoreThresholdPolicy",
    "Simulation",
    "StepEstimate",
    "StepRow",
    "Table",
    "Tabular",
    "TeamLoad",
    "ValueCount",
    "WithoutEvent",
    "as_objective",
    "backtest",
    "backtest_chart",
    "backtest_points",
    "cohort_chart",
    "estimate_steps",
    "flow_chart",
    "forecast",
    "funnel_breakdown",
    "funnel_chart",
    "funnel_cohorts",
    "funnel_report",
    "handoff_chart",
    "handoff_event",
    "handoff_report",
    "handoff_stage",
    "handoff_times",
    "matrix_candidate",
    "precision_at_recall",
    "predictive_candidates",
    "render_html",
    "simulate",
    "threshold_candidates",
    "time_in_stage_chart",
    "training_examples",
    "write_html",
]
