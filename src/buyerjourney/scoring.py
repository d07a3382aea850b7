"""Scores with their breakdown, the scorer protocol, and the built-in scorers.

This is the public face of scoring; the implementation lives in a private
module. See :doc:`the scoring how-to <howto/scoring>` for the rules.
"""

from buyerjourney._core.scoring import (
    GRADES,
    SCORER_GROUP,
    AttributeRule,
    CombinedScorer,
    FitCriterion,
    FitGrader,
    IncrementalScorer,
    Lead,
    LinearDecay,
    PointsRule,
    PointsScorer,
    PointsState,
    Score,
    ScoreGroup,
    ScoreItem,
    Scorer,
    TimeWindow,
    available_scorers,
    checked_call,
    checked_score,
    load_scorer,
)

__all__ = [
    "GRADES",
    "SCORER_GROUP",
    "AttributeRule",
    "CombinedScorer",
    "FitCriterion",
    "FitGrader",
    "IncrementalScorer",
    "Lead",
    "LinearDecay",
    "PointsRule",
    "PointsScorer",
    "PointsState",
    "Score",
    "ScoreGroup",
    "ScoreItem",
    "Scorer",
    "TimeWindow",
    "available_scorers",
    "checked_call",
    "checked_score",
    "load_scorer",
]
