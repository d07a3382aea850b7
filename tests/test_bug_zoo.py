"""A zoo of deliberately broken pipelines, each caught by the verifier.

Every exhibit is a small, realistic mistake in a funnel, its owner rules or
its hooks. Each test builds the broken pipeline, verifies it and asserts the
finding: its code, where it is, and its example (the exact shortest event
path, or the shrunk steps of the run that hit the problem). The verifier runs
Hypothesis with ``derandomize=True`` and no example database, so every
example here is the same on every run, whatever ``HYPOTHESIS_PROFILE`` says.

Budgets are small on purpose: the whole zoo runs in seconds.
"""

from __future__ import annotations

import itertools
import math
from datetime import datetime, timedelta

import attrs
import pytest
from hypothesis import HealthCheck, Phase, settings

from buyerjourney import (
    Context,
    Decision,
    Direction,
    Funnel,
    Hooks,
    InvalidFunnel,
    InvalidOwnerRules,
    Journey,
    Lead,
    Score,
    ScoreItem,
    Stage,
    StageKind,
    Touch,
    Transition,
    presets,
)
from buyerjourney._core.owners import Condition, OwnerRule, OwnerRules
from buyerjourney._pipeline import Pipeline, default_pipeline, default_scorer
from buyerjourney.policies import AnyOf, ThresholdPolicy
from buyerjourney.testing.harness import pipeline_machine, run_pipeline_machine
from buyerjourney.testing.verify import (
    CODES,
    Finding,
    Severity,
    VerificationReport,
    verify,
    verify_pipeline,
)

BUDGET = 50


def waterfall() -> Funnel:
    return presets.demand_waterfall()


def only(report: VerificationReport, code: str) -> Finding:
    """The one finding with *code*; every code in the report must be documented."""
    assert report.codes <= set(CODES), report.codes - set(CODES)
    found = report.by_code(code)
    assert len(found) == 1, str(report)
    return found[0]


# ---------------------------------------------------------------- funnels


def test_a_guarded_shortcut_lets_enterprise_leads_skip_sales_acceptance() -> None:
    funnel = waterfall().extend(
        add_transitions=[Transition("fast_track", "mql", "sql", guard="is_enterprise")]
    )
    hooks = Hooks({"is_enterprise": lambda ctx: ctx.attributes.get("employees", 0) >= 1000})

    report = verify_pipeline(default_pipeline(funnel, hooks=hooks), budget=BUDGET)

    finding = only(report, "gate-bypass")
    assert finding.severity is Severity.ERROR
    assert finding.where == "transition fast_track: mql -> sql [if is_enterprise]"
    assert finding.example == (
        "qualify: inquiry -> mql",
        "fast_track: mql -> sql [if is_enterprise]",
    )
    assert "'sal'" in finding.what
    assert {f.code for f in report.errors} == {"gate-bypass"}


def test_a_recycle_loop_with_no_exit_traps_leads() -> None:
    funnel = Funnel(
        "loop",
        [
            Stage("new", 10, owner="marketing", initial=True),
            Stage("nurture", 20, owner="marketing"),
            Stage("warm", 30, owner="marketing"),
            Stage("won", 40, StageKind.WON, owner="sales", terminal=True),
            Stage("lost", 0, StageKind.LOST, owner="marketing"),
        ],
        [
            Transition("engage", "new", "nurture"),
            Transition("buy", "new", "won"),
            Transition("lose", "new", "lost", Direction.EXIT),
            Transition("warm_up", "nurture", "warm"),
            Transition("cool_down", "warm", "nurture", Direction.BACKWARD),
        ],
    )

    report = verify(funnel, budget=BUDGET)

    finding = only(report, "no-way-out")
    assert finding.severity is Severity.ERROR
    assert finding.where == "stages nurture, warm"
    assert finding.example == ("engage: new -> nurture",)
    assert report.codes == {"no-way-out"}


def test_an_sla_on_a_terminal_stage_is_refused_when_the_funnel_is_built() -> None:
    won = waterfall().stage("won")
    with pytest.raises(InvalidFunnel) as info:
        waterfall().extend(replace_stages=[attrs.evolve(won, sla=timedelta(days=30))])
    assert [(p.code, p.subject) for p in info.value.problems] == [("sla-on-terminal", "won")]


# ---------------------------------------------------------------- owner rules


def test_an_owner_rule_with_a_gap_for_one_segment() -> None:
    funnel = waterfall().extend(replace_stages=[attrs.evolve(waterfall().stage("mql"), owner=None)])
    rules = OwnerRules(
        defaults={s.name: s.owner for s in funnel.stages if s.owner is not None},
        overrides=(
            OwnerRule("marketing", ("mql",), (Condition("segment", ("smb", "mid_market")),)),
        ),
    )
    with pytest.raises(InvalidOwnerRules):
        rules.validate(funnel)

    report = verify(funnel, rules, budget=BUDGET)

    finding = only(report, "owner-gap")
    assert finding.where == "stage mql"
    assert "not (segment in ['smb', 'mid_market'])" in finding.what
    assert finding.example == (
        "qualify: inquiry -> mql",
        "a lead with attributes {} enters 'mql': no team owns it",
    )
    assert {f.code for f in report.errors} == {"owner-gap"}
    assert report.by_code("not-explored")[0].where == "funnel waterfall"


def test_an_owner_rule_shadowed_by_an_earlier_one() -> None:
    funnel = waterfall()
    big = Condition("employees", (1000,), "gte")
    huge = Condition("employees", (5000,), "gte")
    rules = OwnerRules(
        defaults=funnel.owners,  # type: ignore[arg-type]  (every preset stage has an owner)
        teams=("partners", "key_accounts"),
        overrides=(
            OwnerRule("partners", ("opportunity",), (big,)),
            OwnerRule("key_accounts", ("opportunity",), (huge,)),
        ),
    )

    report = verify(funnel, rules, budget=BUDGET)

    finding = only(report, "owner-shadowed")
    assert finding.where == "owner rules overrides[1]"
    assert "overrides[0] comes first" in finding.what
    assert {f.code for f in report.errors} == {"owner-shadowed"}


def test_a_gate_owned_by_the_team_that_hands_off_is_no_handoff() -> None:
    sal = attrs.evolve(waterfall().stage("sal"), owner="marketing")
    funnel = waterfall().extend(replace_stages=[sal])

    report = verify_pipeline(default_pipeline(funnel), budget=BUDGET)

    finding = only(report, "gate-no-handoff")
    assert finding.where == "transition hand_off: mql -> sal"
    assert finding.example == (
        "qualify: inquiry -> mql",
        "hand_off: mql -> sal",
        "a lead with attributes {} is owned by 'marketing' in both 'mql' and 'sal'",
    )
    assert {f.code for f in report.errors} == {"gate-no-handoff"}


def test_a_gate_owned_by_a_team_no_member_holds() -> None:
    funnel = waterfall()
    rules = OwnerRules.for_funnel(funnel, members={"ana": ("marketing",)})

    report = verify(funnel, rules, budget=BUDGET)

    finding = only(report, "gate-nobody-accepts")
    assert finding.severity is Severity.WARNING
    assert finding.where == "stage sal"
    assert finding.example == ("qualify: inquiry -> mql", "hand_off: mql -> sal")
    assert report.ok


# ---------------------------------------------------------------- guards


def test_a_guard_that_is_never_true() -> None:
    funnel = waterfall().extend(
        add_transitions=[Transition("fast_track", "inquiry", "mql", guard="big_company")]
    )
    # The typo ("employes") makes the guard read an attribute no lead has.
    hooks = Hooks({"big_company": lambda ctx: ctx.attributes.get("employes", 0) >= 1000})

    report = verify_pipeline(default_pipeline(funnel, hooks=hooks), budget=BUDGET)

    guard = only(report, "guard-never-true")
    assert guard.where == "guard big_company"
    assert "fast_track: inquiry -> mql [if big_company]" in guard.what
    event = only(report, "event-never-enabled")
    assert event.where == "event fast_track"
    assert report.codes == {"guard-never-true", "event-never-enabled"}


def test_a_stage_whose_only_entry_is_guarded_by_a_never_true_guard() -> None:
    funnel = waterfall().extend(
        add_stages=[Stage("vip", 25, owner="marketing")],
        add_transitions=[
            Transition("upgrade", "mql", "vip", guard="is_platinum"),
            Transition("hand_off", "vip", "sal"),
        ],
    )
    # Contradictory: a platinum lead always has a positive score.
    hooks = Hooks(
        {"is_platinum": lambda ctx: ctx.attributes.get("tier") == "platinum" and ctx.score < 0}
    )

    report = verify_pipeline(
        default_pipeline(funnel, hooks=hooks), budget=BUDGET, attributes=[{"tier": "platinum"}]
    )

    finding = only(report, "stage-never-reached")
    assert finding.where == "stage vip"
    assert "only entries are guarded by never-true guards" in finding.what
    assert finding.example == ("qualify: inquiry -> mql", "upgrade: mql -> vip [if is_platinum]")
    assert only(report, "guard-never-true").where == "guard is_platinum"
    assert report.ok


def test_a_guard_that_raises_for_leads_without_a_country() -> None:
    funnel = waterfall().extend(
        add_transitions=[Transition("fast_track", "inquiry", "mql", guard="in_europe")]
    )

    def in_europe(ctx: Context) -> bool:
        return bool(ctx.attributes["country"] in ("DE", "FR"))

    report = verify_pipeline(
        default_pipeline(funnel, hooks=Hooks({"in_europe": in_europe})), budget=BUDGET
    )

    finding = only(report, "guard-error")
    assert finding.where == "guard in_europe"
    assert finding.example[-1].startswith("Context(")
    assert "attributes=mappingproxy({})" in finding.example[-1]
    assert "KeyError" in finding.what


def test_a_guard_the_hooks_do_not_register() -> None:
    funnel = waterfall().extend(
        add_transitions=[Transition("fast_track", "inquiry", "mql", guard="is_enterprise")]
    )

    report = verify_pipeline(default_pipeline(funnel), budget=BUDGET)

    finding = only(report, "unknown-hook")
    assert finding.where == "guard is_enterprise"
    assert "hooks.add_guard('is_enterprise', fn)" in finding.what
    assert {f.code for f in report.errors} == {"unknown-hook"}


# ---------------------------------------------------------------- scorers


def test_a_scorer_that_is_not_deterministic() -> None:
    funnel = waterfall()
    pipeline = default_pipeline(funnel)
    counter = itertools.count()

    def counting_scorer(lead: Lead, at: datetime) -> Score:
        return Score.from_breakdown([ScoreItem("calls so far", next(counter))])

    report = verify(funnel, pipeline.owners, scorer=counting_scorer, budget=BUDGET)

    finding = only(report, "nondeterministic")
    assert finding.where == "scorer counting_scorer"
    assert finding.example[0] == "touch lead-0 'page_view' at +0h00"
    assert len(finding.example) == 2
    assert finding.example[1].startswith(
        "-> a second engine fed the same steps logged record 1 (scored) differently"
    )
    assert report.codes == {"nondeterministic"}


def test_a_scorer_returning_nan_for_webinars() -> None:
    funnel = waterfall()
    pipeline = default_pipeline(funnel)
    base = default_scorer()

    def nan_on_webinars(lead: Lead, at: datetime) -> Score:
        if lead.touches[-1].kind == "webinar_attended":
            return Score(math.nan)
        return base(lead, at)

    report = verify(
        funnel,
        pipeline.owners,
        scorer=nan_on_webinars,
        policy=pipeline.policy,
        thresholds=pipeline.thresholds,
        budget=BUDGET,
    )

    finding = only(report, "scorer-error")
    assert finding.where == "scorer nan_on_webinars"
    assert finding.example[0] == "touch lead-0 'webinar_attended' at +0h00"
    assert len(finding.example) == 2
    assert "not a finite number (got nan" in finding.example[1]
    assert report.codes == {"scorer-error"}


# ---------------------------------------------------------------- policies


def test_a_policy_that_hands_off_again_after_the_handoff() -> None:
    """The policy forgets to check the stage: it fires hand_off for every lead past inquiry."""

    def eager(journey: Journey, score: Score, touch: Touch) -> Decision:
        if score.value >= 10 and journey.highest != "inquiry":
            return Decision("hand_off", "hot lead")
        return Decision()

    policy = AnyOf(ThresholdPolicy(25, "qualify", stages=("inquiry",)), eager)

    report = verify(waterfall(), scorer=default_scorer(), policy=policy, budget=BUDGET)

    finding = only(report, "policy-refused")
    assert finding.where == "policy AnyOf"
    assert finding.severity is Severity.WARNING
    *steps, last = finding.example
    assert last == (
        "-> policy fired 'hand_off' in 'sal': refused "
        "(stage 'sal' waits for the receiving team to accept)"
    )
    assert steps[-1].startswith("touch lead-0 ")
    assert all(step.split()[1] == "lead-0" for step in steps)
    assert report.codes == {"policy-refused"}


def test_a_policy_that_raises_for_enterprise_leads() -> None:
    def fails_on_enterprise(journey: Journey, score: Score, touch: Touch) -> Decision:
        if journey.attributes.get("segment") == "enterprise":
            raise KeyError("account_manager")
        return Decision()

    report = verify(waterfall(), scorer=default_scorer(), policy=fails_on_enterprise, budget=BUDGET)

    finding = only(report, "policy-error")
    assert finding.where == "policy fails_on_enterprise"
    assert len(finding.example) == 2
    assert finding.example[0].startswith("touch lead-0 'page_view' at +0h00 with {")
    assert "'segment': 'enterprise'" in finding.example[0]
    assert "policy raised KeyError" in finding.example[1]
    assert report.codes == {"policy-error"}


def test_a_threshold_policy_with_a_misspelt_event() -> None:
    policy = ThresholdPolicy(60, "handoff", stages=("mql",))

    report = verify(waterfall(), scorer=default_scorer(), policy=policy, budget=BUDGET)

    finding = only(report, "policy-unknown-event")
    assert finding.where == "policy ThresholdPolicy"
    assert "'handoff'" in finding.what
    assert "hand_off" in finding.what


# ---------------------------------------------------------------- the stateful harness


def coin_flip_pipeline() -> Pipeline:
    funnel = waterfall().extend(
        add_transitions=[Transition("fast_track", "inquiry", "mql", guard="coin_flip")]
    )
    flips = itertools.cycle([True, False])

    def coin_flip(ctx: Context) -> bool:
        return next(flips)

    return default_pipeline(funnel, hooks=Hooks({"coin_flip": coin_flip}))


def test_a_guard_with_hidden_state() -> None:
    report = verify_pipeline(coin_flip_pipeline(), budget=BUDGET)

    finding = only(report, "nondeterministic")
    assert finding.where == "guard coin_flip"
    assert finding.example[0] == "touch lead-0 'fast_track' at +0h00"
    assert finding.example[1].startswith(
        "-> a second engine fed the same steps logged record 2 (transition) differently"
    )
    assert len(finding.example) == 2
    assert report.codes == {"nondeterministic"}


def test_a_guard_that_answers_each_context_once_is_caught_by_the_harness() -> None:
    """Fresh engines build fresh contexts, so replays agree; asking twice does not."""
    funnel = waterfall().extend(
        add_transitions=[Transition("fast_track", "inquiry", "mql", guard="first_ask")]
    )
    asked: list[Context] = []

    def first_ask(ctx: Context) -> bool:
        if any(seen is ctx for seen in asked):
            return False  # "already notified": the second ask is answered differently
        asked.append(ctx)
        return True

    pipeline = default_pipeline(funnel, hooks=Hooks({"first_ask": first_ask}))

    report = verify_pipeline(pipeline, budget=BUDGET)

    finding = only(report, "nondeterministic")
    assert finding.where == "guard first_ask"
    assert "(found by the stateful harness)" in finding.what
    *steps, last = finding.example
    # the shrunk example starts a journey and reaches the guard by a touch or an event
    assert steps[0].startswith("ingest(")
    assert any("'fast_track'" in step for step in steps)
    assert last == (
        "-> the guard 'first_ask' is not deterministic: called twice with the same arguments "
        "it gave True, then False. Hooks must not read the clock, draw random numbers or keep "
        "state between calls."
    )
    assert report.codes == {"nondeterministic"}


def test_the_harness_alone_shrinks_the_hidden_state_guard_to_one_touch() -> None:
    machine = pipeline_machine(coin_flip_pipeline(), touch_kinds=("page_view", "fast_track"))
    quiet = settings(
        max_examples=BUDGET,
        stateful_step_count=10,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.generate, Phase.shrink],
    )

    with pytest.raises(AssertionError, match="the guard 'coin_flip' is not deterministic") as info:
        run_pipeline_machine(machine, settings=quiet)

    rules = ("ingest", "ingest_duplicate", "ingest_late", "send", "accept", "reject", "advance")
    actions = [
        note.removeprefix("state.")
        for note in info.value.__notes__
        if note.startswith("state.") and note.removeprefix("state.").split("(")[0] in rules
    ]
    assert actions[-1].startswith("ingest(")
    assert "kind='fast_track'" in actions[-1]
    assert len(actions) <= 2
