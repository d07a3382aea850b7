"""The strategies added for pipelines: derived funnels, owner rules, leads, actors, touches."""

from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

import buyerjourney.testing
from buyerjourney import (
    SYSTEM,
    Actor,
    Context,
    Direction,
    Engine,
    Funnel,
    InvalidTouch,
    OwnerRules,
    Touch,
    find_problems,
    presets,
)
from buyerjourney._core.owners import BUILTIN_TEAMS
from buyerjourney.testing import (
    EPOCH,
    EXTRA_TEAMS,
    GUARD_NAMES,
    LEAD_ATTRIBUTES,
    PEOPLE,
    SOLO_PERSON,
    TOUCH_KINDS,
    actors,
    derived_funnels,
    funnels,
    lead_attributes,
    owner_rules,
    raw_touch_streams,
    standard_hooks,
    touch_streams,
    touches,
)

EXISTS = settings(max_examples=2000, database=None, phases=[Phase.generate])
"""For ``find()`` calls that only show an example exists: stop at the first, do not shrink."""

SMALLEST = settings(max_examples=200, database=None)
QUICK = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PRESETS = st.sampled_from([presets.seed(), presets.hubspot_lifecycle(), presets.demand_waterfall()])


# ---------------------------------------------------------------- derived_funnels()


@QUICK
@given(PRESETS.flatmap(lambda f: st.tuples(st.just(f), derived_funnels(f, max_changes=5))))
def test_derived_funnels_are_valid_and_run(case: tuple[Funnel, Funnel]) -> None:
    original, derived = case
    assert find_problems(derived.stages, derived.transitions) == []
    assert derived.name == original.name
    assert set(derived.guards) <= set(GUARD_NAMES)
    assert set(original.stage_names) <= set(derived.stage_names)
    # new stages take a neighbour's owner, so the original owner rules still cover them
    Engine(derived, hooks=standard_hooks(), owners=OwnerRules.for_funnel(derived))


@QUICK
@given(funnels().flatmap(lambda f: st.tuples(st.just(f), derived_funnels(f))))
def test_derived_funnels_of_generated_funnels_are_valid(case: tuple[Funnel, Funnel]) -> None:
    _, derived = case
    assert find_problems(derived.stages, derived.transitions) == []


def _new_stage(f: Funnel) -> Any:
    return next((s for s in f.stages if s.name.startswith("extra")), None)


@pytest.mark.parametrize(
    "condition",
    [
        pytest.param(
            lambda f: _new_stage(f) is not None and not _new_stage(f).terminal, id="between"
        ),
        pytest.param(lambda f: _new_stage(f) is not None and _new_stage(f).terminal, id="on-top"),
        pytest.param(lambda f: _new_stage(f) is not None and _new_stage(f).gate, id="gate"),
        pytest.param(lambda f: any(s.name.startswith("dropped") for s in f.stages), id="new-exit"),
        pytest.param(
            lambda f: any(t.event.startswith("drop") and t.target == "lost" for t in f.transitions),
            id="exit-to-existing",
        ),
        pytest.param(lambda f: bool(f.guards), id="guard"),
        pytest.param(
            lambda f: any(t.event.startswith("recycle") for t in f.transitions), id="recycle"
        ),
        pytest.param(lambda f: any(s.sla is not None for s in f.stages), id="sla"),
        pytest.param(lambda f: len(f.transitions) < len(presets.seed().transitions), id="removal"),
    ],
)
def test_every_kind_of_change_occurs(condition: Any) -> None:
    find(derived_funnels(presets.seed()), condition, settings=EXISTS)


def test_an_inserted_stage_sits_between_ranks_with_moves_in_and_out() -> None:
    funnel = find(
        derived_funnels(presets.seed(), max_changes=1),
        lambda f: _new_stage(f) is not None and not _new_stage(f).terminal,
        settings=EXISTS,
    )
    stage = _new_stage(funnel)
    into = [t for t in funnel.transitions if t.target == stage.name]
    out = [t for t in funnel.transitions_from(stage.name) if t.direction is Direction.FORWARD]
    assert len(into) == 1
    assert len(out) == 1
    assert funnel.stage(into[0].source).rank < stage.rank < funnel.stage(out[0].target).rank


def test_derived_funnels_shrink_to_the_original() -> None:
    seed = presets.seed()
    assert find(derived_funnels(seed), lambda f: True, settings=SMALLEST) == seed


@QUICK
@given(derived_funnels(presets.seed(), max_changes=0))
def test_no_changes_gives_the_funnel_back(funnel: Funnel) -> None:
    assert funnel == presets.seed()


@pytest.mark.parametrize(
    ("funnel", "kwargs"),
    [
        ("seed", {}),
        (presets.seed(), {"max_changes": -1}),
        (presets.seed(), {"max_changes": 1.5}),
        (presets.seed(), {"guard_names": []}),
    ],
)
def test_derived_funnels_rejects_bad_arguments(funnel: Any, kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument):
        derived_funnels(funnel, **kwargs)


# ---------------------------------------------------------------- owner_rules()


@QUICK
@given(funnels().flatmap(lambda f: st.tuples(st.just(f), owner_rules(f))))
def test_owner_rules_are_valid_for_their_funnel(case: tuple[Funnel, OwnerRules]) -> None:
    funnel, rules = case
    assert rules.problems(funnel) == []
    assert set(rules.defaults) == set(funnel.stage_names)
    assert set(rules.teams) <= {*BUILTIN_TEAMS, *EXTRA_TEAMS}
    for rule in rules.overrides:
        assert len(rule.when) <= 2
        assert {c.attribute for c in rule.when} <= set(LEAD_ATTRIBUTES)
    for stage in funnel.stages:
        if stage.owner is None:
            assert rules.defaults[stage.name] in rules.teams


@QUICK
@given(PRESETS.flatmap(lambda f: owner_rules(f, solo=True)))
def test_solo_mode_gives_one_person_every_team(rules: OwnerRules) -> None:
    assert rules.solo_member == SOLO_PERSON
    assert set(rules.members[SOLO_PERSON]) == set(rules.teams)


@QUICK
@given(PRESETS.flatmap(lambda f: owner_rules(f, solo=False)))
def test_without_solo_mode_nobody_holds_every_team(rules: OwnerRules) -> None:
    assert not rules.is_solo
    assert set(rules.members) <= set(PEOPLE)


@pytest.mark.parametrize(
    "condition",
    [
        pytest.param(lambda r: any(c.op == "gte" for o in r.overrides for c in o.when), id="gte"),
        pytest.param(lambda r: any(c.op == "lt" for o in r.overrides for c in o.when), id="lt"),
        pytest.param(
            lambda r: any(c.op == "not_in" for o in r.overrides for c in o.when), id="not_in"
        ),
        pytest.param(lambda r: any(not o.stages for o in r.overrides), id="every-stage"),
        pytest.param(lambda r: len(r.overrides) == 3, id="three-overrides"),
        pytest.param(lambda r: "partners" in r.teams, id="extra-team"),
        pytest.param(lambda r: r.is_solo, id="solo"),
        pytest.param(lambda r: bool(r.members) and not r.is_solo, id="members"),
        pytest.param(lambda r: r.defaults["awareness"] == "sales", id="changed-default"),
    ],
)
def test_owner_rules_features_occur(condition: Any) -> None:
    find(owner_rules(presets.seed()), condition, settings=EXISTS)


def test_owner_rules_shrink_to_the_funnels_own_owners() -> None:
    seed = presets.seed()
    smallest = find(owner_rules(seed, solo=False), lambda r: True, settings=SMALLEST)
    assert smallest == OwnerRules.for_funnel(seed)


def test_owner_rules_route_by_lead_attributes() -> None:
    def routes(rules: OwnerRules) -> bool:
        owners = {rules.owner("awareness", {"segment": s}) for s in LEAD_ATTRIBUTES["segment"]}
        return len(owners) > 1

    find(owner_rules(presets.seed()), routes, settings=EXISTS)


@pytest.mark.parametrize(
    ("funnel", "kwargs"),
    [
        (None, {}),
        (presets.seed(), {"solo": "yes"}),
        (presets.seed(), {"teams": "partners"}),
        (presets.seed(), {"teams": ["not a team"]}),
        (presets.seed(), {"max_overrides": -1}),
    ],
)
def test_owner_rules_rejects_bad_arguments(funnel: Any, kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument):
        owner_rules(funnel, **kwargs)


# ---------------------------------------------------------------- lead_attributes() and actors()


@QUICK
@given(lead_attributes())
def test_lead_attributes_use_the_known_keys_and_values(attributes: dict[str, Any]) -> None:
    assert set(attributes) <= set(LEAD_ATTRIBUTES)
    for key, value in attributes.items():
        if key == "employees":
            assert isinstance(value, int)
            assert value >= 0
        else:
            assert value in LEAD_ATTRIBUTES[key]


@QUICK
@given(lead_attributes(keys=["segment"]))
def test_lead_attributes_keys_option(attributes: dict[str, Any]) -> None:
    assert set(attributes) <= {"segment"}


@pytest.mark.parametrize("employees", [199, 200, 999, 1000])
def test_lead_attributes_hit_the_boundaries(employees: int) -> None:
    find(lead_attributes(), lambda a: a.get("employees") == employees, settings=EXISTS)


@pytest.mark.parametrize("keys", ["segment", ["nope"], [1]])
def test_lead_attributes_rejects_unknown_keys(keys: Any) -> None:
    with pytest.raises(InvalidArgument):
        lead_attributes(keys=keys)


@QUICK
@given(st.data())
def test_actors_come_from_the_rules(data: st.DataObject) -> None:
    rules = data.draw(owner_rules(presets.seed()))
    actor = data.draw(actors(owner_rules=rules))
    assert actor.name in {*PEOPLE, *rules.members}
    assert actor.team is None or actor.team in rules.teams


def test_actors_include_the_system_when_asked() -> None:
    find(actors(system=True), lambda a: a == SYSTEM, settings=EXISTS)


@QUICK
@given(actors())
def test_actors_are_people_by_default(actor: Actor) -> None:
    assert actor != SYSTEM
    assert actor.name in PEOPLE


def test_actors_rejects_what_is_not_owner_rules() -> None:
    with pytest.raises(InvalidArgument):
        actors(owner_rules="sales")  # type: ignore[arg-type]


# ---------------------------------------------------------------- touches and streams


@QUICK
@given(touches(lead_ids=["a", "b"], kinds=["page_view"], start=EPOCH))
def test_touches(touch: Touch) -> None:
    assert touch.lead_id in ("a", "b")
    assert touch.kind == "page_view"
    assert EPOCH <= touch.at <= EPOCH + timedelta(days=365)
    assert touch.at.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"lead_ids": []},
        {"lead_ids": "lead-1"},
        {"kinds": [""]},
        {"start": datetime(2024, 1, 1)},  # naive on purpose
        {"end": EPOCH - timedelta(days=1)},
    ],
)
def test_touches_rejects_bad_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument):
        touches(**kwargs)


@QUICK
@given(touch_streams(leads=(2, 3), max_size=30))
def test_streams_are_in_time_order_with_unique_ids(stream: list[Touch]) -> None:
    assert [t.at for t in stream] == sorted(t.at for t in stream)
    assert len({t.touch_id for t in stream}) == len(stream)
    assert {t.lead_id for t in stream} <= {"lead-1", "lead-2", "lead-3"}
    assert all(t.kind in TOUCH_KINDS for t in stream)
    report = Engine(presets.seed()).ingest(stream)
    assert report.accepted == len(stream)


def _expected_quarantine(stream: list[Touch]) -> tuple[list[int], int]:
    """What an engine sets aside (touches older than the clock), and how many repeats it skips."""
    seen: set[str] = set()
    clock: datetime | None = None
    bad = []
    repeats = 0
    for position, touch in enumerate(stream):
        if touch.touch_id in seen:
            repeats += 1
            continue
        if clock is not None and touch.at < clock:
            bad.append(position)
            continue
        seen.add(touch.touch_id)
        clock = touch.at
    return bad, repeats


@QUICK
@given(touch_streams(duplicates=True, late=True))
def test_duplicates_and_late_touches_are_what_the_engine_quarantines(stream: list[Touch]) -> None:
    """Late touches are set aside; repeated ids are skipped and counted as duplicates."""
    report = Engine(presets.seed()).ingest(stream)
    late, repeats = _expected_quarantine(stream)
    assert [q.position for q in report.quarantined] == late
    assert report.duplicates == repeats


def test_duplicates_repeat_an_earlier_touch_later() -> None:
    def has_duplicate(stream: list[Touch]) -> bool:
        ids = [t.touch_id for t in stream]
        return len(set(ids)) < len(ids)

    stream = find(touch_streams(duplicates=True), has_duplicate, settings=EXISTS)
    by_id: dict[str, Touch] = {}
    for touch in stream:
        if touch.touch_id in by_id:
            first = by_id[touch.touch_id]
            assert (touch.lead_id, touch.kind, touch.attributes) == (
                first.lead_id,
                first.kind,
                first.attributes,
            )
            assert touch.at >= first.at
        by_id.setdefault(touch.touch_id, touch)
    assert [t.at for t in stream] == sorted(t.at for t in stream)


def test_late_touches_go_back_in_time() -> None:
    stream = find(
        touch_streams(late=True),
        lambda s: any(b.at < a.at for a, b in itertools.pairwise(s)),
        settings=EXISTS,
    )
    assert len({t.touch_id for t in stream}) == len(stream)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"leads": (0, 2)},
        {"leads": (3, 2)},
        {"leads": [1, 2]},
        {"max_size": -1},
        {"max_gap": timedelta(0)},
        {"duplicates": "yes"},
        {"kinds": []},
    ],
)
def test_touch_streams_rejects_bad_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument):
        touch_streams(**kwargs)


@QUICK
@given(raw_touch_streams(malformed=False))
def test_well_formed_raw_streams_round_trip(entries: list[dict[str, Any]]) -> None:
    parsed = [Touch.from_dict(entry) for entry in entries]
    assert [t.to_dict() for t in parsed] == entries


@QUICK
@given(raw_touch_streams())
def test_a_raw_entry_parses_or_is_rejected_as_invalid_touch(entries: list[dict[str, Any]]) -> None:
    times = []
    for entry in entries:
        try:
            touch = Touch.from_dict(entry)
        except InvalidTouch:
            continue
        times.append(touch.at)
    assert times == sorted(times)


def _rejected(entry: dict[str, Any]) -> bool:
    try:
        Touch.from_dict(entry)
    except InvalidTouch:
        return True
    return False


@pytest.mark.parametrize(
    "flaw",
    [
        pytest.param(lambda e: "kind" not in e, id="missing-field"),
        pytest.param(
            lambda e: (
                isinstance(e.get("at"), str) and e["at"].startswith("20") and "+" not in e["at"]
            ),
            id="naive-time",
        ),
        pytest.param(lambda e: not isinstance(e.get("lead_id", ""), str), id="wrong-type"),
        pytest.param(lambda e: "source" in e, id="unknown-field"),
        pytest.param(lambda e: isinstance(e.get("properties"), list), id="properties-not-object"),
    ],
)
def test_malformed_entries_of_each_kind_occur_and_are_rejected(flaw: Any) -> None:
    entries = find(raw_touch_streams(), lambda es: any(flaw(e) for e in es), settings=EXISTS)
    assert all(_rejected(e) for e in entries if flaw(e))


# ---------------------------------------------------------------- registration and exports


def test_from_type_uses_the_registered_strategies() -> None:
    @settings(max_examples=10, deadline=None)
    @given(
        st.from_type(Funnel),
        st.from_type(OwnerRules),
        st.from_type(Touch),
        st.from_type(Actor),
        st.from_type(Context),
    )
    def check(funnel: Funnel, rules: OwnerRules, touch: Touch, actor: Actor, ctx: Context) -> None:
        assert find_problems(funnel.stages, funnel.transitions) == []
        assert rules.defaults
        assert touch.at.tzinfo is not None
        assert actor.name in PEOPLE
        assert isinstance(ctx, Context)

    check()


EXPECTED_TESTING_API = [
    "DEFAULT_LEADS",
    "DEFAULT_STEPS",
    "EPOCH",
    "EXTRA_TEAMS",
    "GENERIC_TOUCH_KINDS",
    "GUARD_NAMES",
    "LEAD_ATTRIBUTES",
    "OWNERS",
    "PEOPLE",
    "SCORE_THRESHOLDS",
    "SOLO_PERSON",
    "START",
    "TOUCH_KINDS",
    "UNKNOWN_EVENTS",
    "Advance",
    "Operation",
    "Outcome",
    "PipelineMachine",
    "actors",
    "contexts",
    "derived_funnels",
    "event_sequences",
    "funnels",
    "lead_attributes",
    "owner_rules",
    "pipeline_machine",
    "raw_touch_streams",
    "run_pipeline_machine",
    "standard_hooks",
    "touch_streams",
    "touches",
]


def test_the_testing_package_exports_exactly_its_public_names() -> None:
    assert sorted(buyerjourney.testing.__all__) == sorted(EXPECTED_TESTING_API)
    for name in EXPECTED_TESTING_API:
        assert getattr(buyerjourney.testing, name) is not None


def test_without_hypothesis_the_package_imports_but_names_explain_the_extra() -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["hypothesis"] = None  # as if it were not installed
        import buyerjourney.testing
        from buyerjourney.testing.pytest_plugin import Clock
        print(Clock().tick(hours=1).isoformat())
        try:
            from buyerjourney.testing import funnels
        except ImportError as exc:
            print(type(exc).__name__, exc)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out[0] == datetime(2024, 1, 1, 1, tzinfo=timezone.utc).isoformat()
    assert out[1].startswith("MissingExtra")
    assert "pip install 'buyerjourney[testing]'" in out[1]
