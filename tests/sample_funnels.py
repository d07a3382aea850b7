"""Small hand-written funnels and guard registries shared by the engine and diagram tests."""

from __future__ import annotations

from datetime import timedelta

from buyerjourney import Context, Direction, Funnel, Hooks, Stage, StageKind, Transition

BACK, EXIT = Direction.BACKWARD, Direction.EXIT


def demo_funnel() -> Funnel:
    """Five stages with guarded alternatives, a gate, a backward move, an exit and a terminal."""
    return Funnel(
        "demo",
        [
            Stage("lead", 10, owner="marketing", initial=True, description="New: a form fill."),
            Stage("mql", 20, owner="marketing", sla=timedelta(days=7)),
            Stage("sql", 30, owner="sales", gate=True, sla=timedelta(hours=72)),
            Stage("won", 40, StageKind.WON, owner="sales", terminal=True),
            Stage("lost", 0, StageKind.LOST, owner="sales"),
        ],
        [
            Transition("qualify", "lead", "sql", guard="is_enterprise"),
            Transition("qualify", "lead", "mql", guard="is_hot"),
            Transition("qualify", "lead", "mql"),
            Transition("hand_off", "mql", "sql", guard="is_hot"),
            Transition("recycle", "sql", "lead", BACK),
            Transition("recycle", "mql", "lead", BACK, guard="is_hot"),
            Transition("win", "sql", "won"),
            Transition("lose", "lead", "lost", EXIT),
            Transition("lose", "mql", "lost", EXIT),
            Transition("lose", "sql", "lost", EXIT),
        ],
    )


def demo_hooks(calls: list[str] | None = None) -> Hooks:
    """Guards for :func:`demo_funnel`; each call's name is appended to *calls*."""
    log = calls if calls is not None else []

    def is_enterprise(ctx: Context) -> bool:
        log.append("is_enterprise")
        return bool(ctx.attributes.get("employees", 0) >= 1000)

    def is_hot(ctx: Context) -> bool:
        log.append("is_hot")
        return ctx.score >= 50

    return Hooks({"is_enterprise": is_enterprise, "is_hot": is_hot})


def raising_hooks() -> Hooks:
    """``is_enterprise`` raises; ``is_hot`` returns a number instead of a bool."""

    def is_enterprise(ctx: Context) -> bool:
        msg = "CRM unreachable"
        raise ConnectionError(msg)

    def is_hot(ctx: Context) -> bool:
        return ctx.score  # type: ignore[return-value]

    return Hooks({"is_enterprise": is_enterprise, "is_hot": is_hot})


ENTERPRISE = Context(lead_id="L1", attributes={"employees": 5000}, score=10)
HOT = Context(lead_id="L2", attributes={"employees": 10}, score=80)
COLD = Context(lead_id="L3", attributes={"employees": 10}, score=1)
