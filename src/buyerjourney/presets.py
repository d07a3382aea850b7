"""Ready-made funnels: the seed funnel, a HubSpot-style lifecycle and the B2B waterfall.

Each preset is a function returning a fresh, validated :class:`~buyerjourney.Funnel`
with default owners (``marketing`` / ``sales``) on every stage. Ranks leave
gaps of 10 so custom stages fit between existing ones::

    from buyerjourney import presets

    funnel = presets.get("waterfall")
    print(presets.names())  # ('seed', 'hubspot', 'waterfall')
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import NamedTuple

from buyerjourney._core.funnel import Direction, Funnel, Stage, StageKind, Transition
from buyerjourney.errors import UnknownPreset

__all__ = [
    "ThresholdStep",
    "default_thresholds",
    "demand_waterfall",
    "get",
    "hubspot_lifecycle",
    "names",
    "seed",
]

_FWD, _BACK, _EXIT = Direction.FORWARD, Direction.BACKWARD, Direction.EXIT


def seed() -> Funnel:
    """The classic buyer's journey: Awareness → Consideration → Conversion → Retention → Advocacy.

    Marketing owns awareness and consideration, sales owns conversion and
    keeps the account in retention; advocacy (referrals) goes back to
    marketing. Consideration can recycle to awareness (``nurture``, a backward
    move that needs a reason); open stages can be ``lose``-t, and a retained
    customer can ``churn``.
    """
    return Funnel(
        "seed",
        [
            Stage(
                "awareness",
                10,
                owner="marketing",
                initial=True,
                description="Marketing casts a wide net: content, social, newsletters, ads.",
            ),
            Stage(
                "consideration",
                20,
                owner="marketing",
                description="A warm lead gets targeted material: personal email, reviews.",
            ),
            Stage(
                "conversion",
                30,
                StageKind.WON,
                owner="sales",
                description="The buyer commits: a salesperson closes or the buyer checks out.",
            ),
            Stage(
                "retention",
                40,
                StageKind.AFTER_PURCHASE,
                owner="sales",
                description="A happy buyer stays and buys again.",
            ),
            Stage(
                "advocacy",
                50,
                StageKind.AFTER_PURCHASE,
                owner="marketing",
                terminal=True,
                description="A loyal follower refers others.",
            ),
            Stage("lost", 0, StageKind.LOST, owner="marketing", description="Left before buying."),
            Stage("churned", 0, StageKind.LOST, owner="sales", description="Left after buying."),
        ],
        [
            Transition("engage", "awareness", "consideration", _FWD),
            Transition("convert", "consideration", "conversion", _FWD),
            Transition("nurture", "consideration", "awareness", _BACK),
            Transition("retain", "conversion", "retention", _FWD),
            Transition("advocate", "retention", "advocacy", _FWD),
            Transition("lose", "awareness", "lost", _EXIT),
            Transition("lose", "consideration", "lost", _EXIT),
            Transition("churn", "conversion", "churned", _EXIT),
            Transition("churn", "retention", "churned", _EXIT),
        ],
        "The seed funnel: Awareness, Consideration, Conversion, then Retention and Advocacy.",
    )


def hubspot_lifecycle() -> Funnel:
    """A HubSpot-style contact lifecycle, from subscriber to evangelist.

    Subscriber → Lead → MQL → SQL → Opportunity → Customer → Evangelist, plus
    ``other`` for contacts that fit nowhere (an exit from every open stage and
    from customer). Marketing owns subscriber, lead, MQL and evangelist; sales
    owns SQL, opportunity and customer. HubSpot only moves a contact forward
    automatically; here going back is an explicit backward ``recycle`` (from
    MQL, SQL or opportunity to lead) that needs a reason.
    """
    open_stages = ("subscriber", "lead", "mql", "sql", "opportunity")
    return Funnel(
        "hubspot",
        [
            Stage(
                "subscriber",
                10,
                owner="marketing",
                initial=True,
                description="Opted in to hear from you (blog, newsletter).",
            ),
            Stage("lead", 20, owner="marketing", description="Showed interest beyond a sign-up."),
            Stage(
                "mql",
                30,
                owner="marketing",
                description="Marketing qualified lead: ready for sales by marketing's measure.",
            ),
            Stage(
                "sql",
                40,
                owner="sales",
                description="Sales qualified lead: sales agrees it is a potential customer.",
            ),
            Stage("opportunity", 50, owner="sales", description="A deal is open."),
            Stage("customer", 60, StageKind.WON, owner="sales", description="Closed a deal."),
            Stage(
                "evangelist",
                70,
                StageKind.AFTER_PURCHASE,
                owner="marketing",
                terminal=True,
                description="A customer who advocates for you.",
            ),
            Stage(
                "other",
                0,
                StageKind.DISQUALIFIED,
                owner="marketing",
                description="Fits no other stage.",
            ),
        ],
        [
            Transition("to_lead", "subscriber", "lead", _FWD),
            Transition("to_mql", "lead", "mql", _FWD),
            Transition("to_sql", "mql", "sql", _FWD),
            Transition("to_opportunity", "sql", "opportunity", _FWD),
            Transition("win", "opportunity", "customer", _FWD),
            Transition("to_evangelist", "customer", "evangelist", _FWD),
            Transition("recycle", "mql", "lead", _BACK),
            Transition("recycle", "sql", "lead", _BACK),
            Transition("recycle", "opportunity", "lead", _BACK),
            *(Transition("to_other", s, "other", _EXIT) for s in (*open_stages, "customer")),
        ],
        "A HubSpot-style contact lifecycle.",
    )


def demand_waterfall() -> Funnel:
    """The B2B demand waterfall: Inquiry → MQL → SAL → SQL → Opportunity → Won / Lost.

    SAL (sales accepted lead) is an acceptance **gate**: when marketing hands
    an MQL over, sales accepts or rejects it before contact. A rejection
    recycles the lead to ``inquiry`` (nurture) with a reason. SAL has a 72-hour
    SLA (the usual ceiling for follow-up). Disqualification happens after
    contact, from SQL; ``lose`` closes an opportunity.
    """
    return Funnel(
        "waterfall",
        [
            Stage(
                "inquiry",
                10,
                owner="marketing",
                initial=True,
                description="A raw response: form fill, download, event sign-up.",
            ),
            Stage(
                "mql",
                20,
                owner="marketing",
                description="Marketing qualified lead: fit and engagement say sales-ready.",
            ),
            Stage(
                "sal",
                30,
                owner="sales",
                gate=True,
                sla=timedelta(hours=72),
                description="Sales accepted lead: sales took the handoff and will follow up.",
            ),
            Stage(
                "sql",
                40,
                owner="sales",
                description="Sales qualified lead: contacted and qualified by sales.",
            ),
            Stage("opportunity", 50, owner="sales", description="A deal is being worked."),
            Stage(
                "won", 60, StageKind.WON, owner="sales", terminal=True, description="Closed won."
            ),
            Stage("lost", 0, StageKind.LOST, owner="sales", description="Closed lost."),
            Stage(
                "disqualified",
                0,
                StageKind.DISQUALIFIED,
                owner="sales",
                description="Not a buyer, found after contact.",
            ),
        ],
        [
            Transition("qualify", "inquiry", "mql", _FWD),
            Transition("hand_off", "mql", "sal", _FWD),
            Transition("nurture", "mql", "inquiry", _BACK),
            Transition("recycle", "sal", "inquiry", _BACK),
            Transition("qualify_sales", "sal", "sql", _FWD),
            Transition("open_opportunity", "sql", "opportunity", _FWD),
            Transition("win", "opportunity", "won", _FWD),
            Transition("disqualify", "sql", "disqualified", _EXIT),
            Transition("lose", "opportunity", "lost", _EXIT),
        ],
        "The SiriusDecisions / Forrester B2B demand waterfall.",
    )


_PRESETS: dict[str, Callable[[], Funnel]] = {
    "seed": seed,
    "hubspot": hubspot_lifecycle,
    "waterfall": demand_waterfall,
}


def names() -> tuple[str, ...]:
    """The names :func:`get` accepts."""
    return tuple(_PRESETS)


def get(name: str) -> Funnel:
    """Return the preset called *name* (see :func:`names`).

    Raises:
        UnknownPreset: No preset has that name (the message lists the presets).
    """
    try:
        factory = _PRESETS[name]
    except (KeyError, TypeError):
        raise UnknownPreset(name, _PRESETS) from None
    return factory()


class ThresholdStep(NamedTuple):
    """A default score threshold of a preset: at *score*, send *event* from *stage* to *target*."""

    score: float
    event: str
    stage: str
    target: str


_THRESHOLDS: dict[str, tuple[ThresholdStep, ...]] = {
    "seed": (ThresholdStep(20, "engage", "awareness", "consideration"),),
    "hubspot": (
        ThresholdStep(10, "to_lead", "subscriber", "lead"),
        ThresholdStep(50, "to_mql", "lead", "mql"),
    ),
    "waterfall": (
        ThresholdStep(25, "qualify", "inquiry", "mql"),
        ThresholdStep(60, "hand_off", "mql", "sal"),
    ),
}


def _fits(funnel: Funnel, step: ThresholdStep) -> bool:
    return step.stage in funnel and any(
        t.event == step.event and t.target == step.target
        for t in funnel.transitions_from(step.stage)
    )


def default_thresholds(funnel: Funnel) -> tuple[ThresholdStep, ...]:
    """The default score thresholds for *funnel*, if it is a preset or built from one.

    A step applies when its stage is in the funnel and its event still
    leads from that stage to the same target: checked on the structure, not
    the name, so a funnel derived with :meth:`~buyerjourney.Funnel.extend`
    keeps its preset's thresholds whatever its new name. A funnel named like
    a preset uses that preset's steps; any other uses the preset with the
    most applicable steps (the first in :func:`names` order on a tie). A
    funnel that shares no step with a preset gets none.
    """
    candidates = (
        [_THRESHOLDS[funnel.name]] if funnel.name in _THRESHOLDS else list(_THRESHOLDS.values())
    )
    best: tuple[ThresholdStep, ...] = ()
    for steps in candidates:
        fitting = tuple(step for step in steps if _fits(funnel, step))
        if len(fitting) > len(best):
            best = fitting
    return best
