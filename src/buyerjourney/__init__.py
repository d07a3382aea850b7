"""buyerjourney: the buyer's journey as a state machine, with owners, handoffs and scores.

The public API is what this package exports in ``__all__``, plus the
``__all__`` of its modules (``buyerjourney.scoring``, ``buyerjourney.report`` ...);
any other name may change without notice. ``buyerjourney.testing`` (the
Hypothesis toolkit) needs the ``testing`` extra and is never imported here.
"""

from . import presets
from ._version import __version__
from .engine import Engine, IngestReport, Overdue, Quarantined
from .errors import (
    ActionRefused,
    BuyerJourneyError,
    CorruptLog,
    FunnelFormatError,
    HookError,
    InvalidFunnel,
    InvalidOwnerRules,
    InvalidTouch,
    MissingExtra,
    ReasonRequired,
    TransitionNotAllowed,
    UnknownHook,
    UnknownPreset,
    UnknownStage,
)
from .events import SYSTEM, Action, Actor, Record, RecordKind, Touch
from .fileformat import dump_funnel, dumps_funnel, load_funnel, loads_funnel
from .funnel import Direction, Funnel, Problem, Stage, StageKind, Transition, find_problems
from .hooks import Context, Guard, Hooks
from .journey import Journey, StageTime, rebuild
from .machine import FunnelMachine, build_machine_class, funnel_machine
from .owners import MARKETING, SALES, Condition, OwnerRule, OwnerRules
from .pipeline import Pipeline, default_pipeline
from .policies import AllOf, AnyOf, Decision, MatrixPolicy, Policy, ThresholdPolicy, TouchKindPolicy
from .scoring import (
    AttributeRule,
    CombinedScorer,
    FitCriterion,
    FitGrader,
    Lead,
    LinearDecay,
    PointsRule,
    PointsScorer,
    Score,
    ScoreGroup,
    ScoreItem,
    Scorer,
    TimeWindow,
)
from .store import SQLiteStore
from .table import CompiledFunnel, compile_funnel

__all__ = [
    "MARKETING",
    "SALES",
    "SYSTEM",
    "Action",
    "ActionRefused",
    "Actor",
    "AllOf",
    "AnyOf",
    "AttributeRule",
    "BuyerJourneyError",
    "CombinedScorer",
    "CompiledFunnel",
    "Condition",
    "Context",
    "CorruptLog",
    "Decision",
    "Direction",
    "Engine",
    "FitCriterion",
    "FitGrader",
    "Funnel",
    "FunnelFormatError",
    "FunnelMachine",
    "Guard",
    "HookError",
    "Hooks",
    "IngestReport",
    "InvalidFunnel",
    "InvalidOwnerRules",
    "InvalidTouch",
    "Journey",
    "Lead",
    "LinearDecay",
    "MatrixPolicy",
    "MissingExtra",
    "Overdue",
    "OwnerRule",
    "OwnerRules",
    "Pipeline",
    "PointsRule",
    "PointsScorer",
    "Policy",
    "Problem",
    "Quarantined",
    "ReasonRequired",
    "Record",
    "RecordKind",
    "SQLiteStore",
    "Score",
    "ScoreGroup",
    "ScoreItem",
    "Scorer",
    "Stage",
    "StageKind",
    "StageTime",
    "ThresholdPolicy",
    "TimeWindow",
    "Touch",
    "TouchKindPolicy",
    "Transition",
    "TransitionNotAllowed",
    "UnknownHook",
    "UnknownPreset",
    "UnknownStage",
    "__version__",
    "build_machine_class",
    "compile_funnel",
    "default_pipeline",
    "dump_funnel",
    "dumps_funnel",
    "find_problems",
    "funnel_machine",
    "load_funnel",
    "loads_funnel",
    "presets",
    "rebuild",
]
