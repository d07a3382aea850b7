"""Sample plugins that the entry point tests load by ``module:attr`` reference.

The tests put this directory on ``sys.path`` and point fake
``importlib.metadata.EntryPoint`` objects at the names below.
"""

from __future__ import annotations

from datetime import datetime

from buyerjourney._core.journey import Journey
from buyerjourney._core.records import Touch
from buyerjourney.policies import Decision, ThresholdPolicy
from buyerjourney.scoring import Lead, PointsRule, PointsScorer, Score, ScoreItem


class TouchCounter:
    """A scorer class with a no-argument constructor: one point per touch up to ``at``."""

    def __init__(self, points: float = 1.0) -> None:
        self.points = points

    def __call__(self, lead: Lead, at: datetime) -> Score:
        count = sum(1 for t in lead.touches if t.at <= at)
        return Score.from_breakdown([ScoreItem("touches", count * self.points, f"{count} touches")])


def constant_scorer(lead: Lead, at: datetime) -> Score:
    """A scorer function: always 7."""
    return Score(7.0, (ScoreItem("constant", 7.0),))


CLICKS = PointsScorer([PointsRule("clicks", 5, kind="email_click")])
"""A configured scorer instance."""


class DemoPolicy:
    """A policy class with a no-argument constructor: a demo request qualifies."""

    def __call__(self, journey: Journey, score: Score, touch: Touch) -> Decision:
        if touch.kind == "demo_request":
            return Decision("qualify", "asked for a demo")
        return Decision()


def never(journey: Journey, score: Score, touch: Touch) -> Decision:
    """A policy function that never fires."""
    return Decision()


MQL = ThresholdPolicy(50, "qualify", stages=("lead",))
"""A configured policy instance."""


class NeedsArguments:
    """A class that cannot be built without arguments."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold

    def __call__(self, lead: Lead, at: datetime) -> Score:
        return Score(self.threshold)


NOT_A_HOOK = 42
"""Neither callable nor a class."""
