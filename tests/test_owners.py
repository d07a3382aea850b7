"""Owner rules: defaults, ordered overrides, validation, solo mode, files and properties."""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import buyerjourney
from buyerjourney import presets
from buyerjourney._adapters.files import load_owner_rules, save_owner_rules
from buyerjourney._core.funnel import Funnel, Stage, StageKind, Transition
from buyerjourney._core.owners import (
    BUILTIN_TEAMS,
    MARKETING,
    OPS,
    PROBLEM_CODES,
    SALES,
    Condition,
    OwnerRule,
    OwnerRules,
)
from buyerjourney._core.records import SYSTEM, Actor
from buyerjourney.errors import BuyerJourneyError, InvalidOwnerRules, Problem

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

PRESETS = [presets.seed, presets.hubspot_lifecycle, presets.demand_waterfall]
SEED = presets.seed()

PARTNER = Condition("channel", ("partner",))
BIG = Condition("employees", (200,), "gte")
SMALL = Condition("employees", (200,), "lt")


def problems_of(rules: OwnerRules, funnel: Funnel = SEED) -> list[str]:
    """The messages of every problem, checking that validate() raises them all."""
    with pytest.raises(InvalidOwnerRules) as info:
        rules.validate(funnel)
    assert list(info.value.problems) == rules.problems(funnel)
    assert all(isinstance(p, Problem) and p.code in PROBLEM_CODES for p in info.value.problems)
    return [p.message for p in info.value.problems]


def messages(error: InvalidOwnerRules) -> list[str]:
    return [p.message for p in error.problems]


# ---------------------------------------------------------------- defaults


def test_team_constants() -> None:
    assert (MARKETING, SALES) == ("marketing", "sales")
    assert BUILTIN_TEAMS == (MARKETING, SALES)
    assert OPS == ("in", "not_in", "gte", "lt")


@pytest.mark.parametrize("make", PRESETS, ids=lambda f: f.__name__)
def test_defaults_come_from_each_preset(make: Any) -> None:
    funnel = make()
    rules = OwnerRules.for_funnel(funnel)
    assert rules.problems(funnel) == []
    assert rules.teams == BUILTIN_TEAMS
    for stage in funnel.stages:
        assert stage.owner is not None
        assert rules.owner(stage.name, {}) == stage.owner
        assert rules.owner(stage.name, {"channel": "partner", "employees": 5000}) == stage.owner
        assert rules.matching_rule(stage.name, {}) is None


def test_defaults_replace_the_stage_owner_per_stage() -> None:
    rules = OwnerRules.for_funnel(SEED, defaults={"retention": MARKETING})
    assert rules.owner("retention") == MARKETING
    assert rules.owner("conversion") == SALES
    assert rules.defaults["retention"] == MARKETING


def test_funnel_teams_are_known_without_listing_them() -> None:
    funnel = SEED.extend(
        replace_stages=[Stage("retention", 40, StageKind.AFTER_PURCHASE, owner="customer_success")]
    )
    rules = OwnerRules.for_funnel(funnel)
    assert rules.teams == (MARKETING, SALES, "customer_success")
    assert rules.owner("retention") == "customer_success"


def test_added_team_is_known_and_builtins_stay_first() -> None:
    rules = OwnerRules(defaults={}, teams=("partners", SALES, "partners"))
    assert rules.teams == (MARKETING, SALES, "partners")


def test_rules_are_hashable_values() -> None:
    a = OwnerRules.for_funnel(SEED, overrides=[OwnerRule(SALES, ("consideration",), (BIG,))])
    b = OwnerRules.for_funnel(SEED, overrides=[OwnerRule(SALES, ("consideration",), (BIG,))])
    assert a == b
    assert hash(a) == hash(b)
    assert a != OwnerRules.for_funnel(SEED)


# ---------------------------------------------------------------- overrides


def test_first_match_wins_over_later_rules_and_the_default() -> None:
    partner_rule = OwnerRule("partners", ("consideration",), (PARTNER,))
    big_rule = OwnerRule(SALES, ("consideration",), (BIG,))
    lead = {"channel": "partner", "employees": 500}
    first = OwnerRules.for_funnel(SEED, teams=["partners"], overrides=[partner_rule, big_rule])
    second = OwnerRules.for_funnel(SEED, teams=["partners"], overrides=[big_rule, partner_rule])
    assert first.owner("consideration", lead) == "partners"
    assert second.owner("consideration", lead) == SALES
    assert first.matching_rule("consideration", lead) is partner_rule
    assert first.owner("consideration", {"employees": 500}) == SALES
    assert first.owner("consideration", {"channel": "web", "employees": 10}) == MARKETING


def test_rule_applies_only_to_its_stages() -> None:
    rules = OwnerRules.for_funnel(
        SEED, teams=["partners"], overrides=[OwnerRule("partners", ("consideration",), (PARTNER,))]
    )
    assert rules.owner("consideration", {"channel": "partner"}) == "partners"
    assert rules.owner("awareness", {"channel": "partner"}) == MARKETING
    assert rules.owner("conversion", {"channel": "partner"}) == SALES


def test_rule_without_stages_applies_to_every_stage() -> None:
    rules = OwnerRules.for_funnel(
        SEED, teams=["partners"], overrides=[OwnerRule("partners", when=(PARTNER,))]
    )
    for stage in SEED.stage_names:
        assert rules.owner(stage, {"channel": "partner"}) == "partners"


def test_all_conditions_of_a_rule_must_match() -> None:
    rule = OwnerRule(SALES, ("consideration",), (PARTNER, BIG))
    assert rule.matches({"channel": "partner", "employees": 200})
    assert not rule.matches({"channel": "partner", "employees": 199})
    assert not rule.matches({"employees": 500})
    assert OwnerRule(SALES).matches({})
    assert OwnerRule(SALES).unconditional
    assert not rule.unconditional


def test_numeric_ops_split_by_company_size() -> None:
    rules = OwnerRules.for_funnel(SEED, overrides=[OwnerRule(SALES, ("consideration",), (BIG,))])
    assert rules.owner("consideration", {"employees": 200}) == SALES
    assert rules.owner("consideration", {"employees": 199.5}) == MARKETING
    assert rules.owner("consideration", {"employees": 10_000}) == SALES
    assert BIG.matches({"employees": 200.0})
    assert SMALL.matches({"employees": 199})
    assert not SMALL.matches({"employees": 200})
    assert SMALL.matches({"employees": float("-inf")})
    assert not SMALL.matches({"employees": float("nan")})
    assert not BIG.matches({"employees": float("nan")})


def test_numeric_ops_match_numbers_only() -> None:
    for value in ("250", True, [250], {"n": 250}):
        assert not BIG.matches({"employees": value})
        assert not SMALL.matches({"employees": value})


def test_missing_or_none_attribute_never_matches_whatever_the_op() -> None:
    conditions = [
        PARTNER,
        Condition("channel", ("partner",), "not_in"),
        BIG,
        SMALL,
    ]
    for condition in conditions:
        assert not condition.matches({})
        assert not condition.matches({condition.attribute: None})
        assert not condition.matches({"other": "partner"})


def test_equality_is_type_aware() -> None:
    one = Condition("n", (1,))
    assert one.matches({"n": 1})
    assert one.matches({"n": 1.0})
    assert not one.matches({"n": True})
    assert not one.matches({"n": "1"})
    assert Condition("flag", (True,)).matches({"flag": True})
    assert not Condition("flag", (True,)).matches({"flag": 1})
    assert not PARTNER.matches({"channel": "Partner"})
    assert not PARTNER.matches({"channel": ["partner"]})


def test_not_in_matches_present_values_outside_the_list() -> None:
    condition = Condition("country", ("BR", "PT"), "not_in")
    assert condition.matches({"country": "US"})
    assert condition.matches({"country": ["BR"]})
    assert not condition.matches({"country": "BR"})


def test_condition_str_reads_like_the_rule() -> None:
    assert str(PARTNER) == "channel in ['partner']"
    assert str(BIG) == "employees >= 200"
    assert str(SMALL) == "employees < 200"
    assert str(Condition("c", ("x",), "not_in")) == "c not in ['x']"
    assert str(OwnerRule(SALES, ("mql",), (BIG,))) == "team 'sales' in mql when employees >= 200"


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"attribute": "c", "values": ("x",), "op": "ge"}, ".op: expected one of 'in', 'not_in'"),
        ({"attribute": "c", "values": ()}, "needs at least one value"),
        ({"attribute": "n", "values": (1, 2), "op": "gte"}, "exactly one number"),
        ({"attribute": "n", "values": ("200",), "op": "lt"}, "needs a finite number"),
        ({"attribute": "n", "values": (True,), "op": "gte"}, "needs a finite number"),
        ({"attribute": "n", "values": (float("nan"),)}, "values[0]: expected a str, bool"),
        ({"attribute": "n", "values": (None,)}, "values[0]: expected a str, bool"),
        ({"attribute": "", "values": ("x",)}, ".attribute: expected a non-empty"),
    ],
)
def test_malformed_condition_is_refused(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InvalidOwnerRules) as info:
        Condition(**kwargs)
    assert fragment in str(info.value)
    assert isinstance(info.value, (BuyerJourneyError, ValueError))


def test_a_lone_string_is_refused_where_a_tuple_is_expected() -> None:
    with pytest.raises(TypeError, match="one-item tuple"):
        Condition("channel", "partner")
    with pytest.raises(TypeError, match="one-item tuple"):
        OwnerRule(SALES, "consideration")
    with pytest.raises(TypeError, match=r"members\['ana'\]"):
        OwnerRules(defaults={}, members={"ana": "sales"})
    with pytest.raises(TypeError, match=r"'when\[0\]' must be a Condition"):
        OwnerRule(SALES, when=("channel",))  # type: ignore[arg-type]


def test_numpy_like_numbers_become_plain_numbers() -> None:
    from fractions import Fraction  # noqa: PLC0415

    condition = Condition("n", (Fraction(1, 2),), "gte")  # type: ignore[arg-type]
    assert condition.values == (0.5,)
    assert type(condition.values[0]) is float


def test_owner_on_an_unchecked_gap_raises() -> None:
    rules = OwnerRules(defaults={}, overrides=[OwnerRule(SALES, ("conversion",), (BIG,))])
    assert rules.owner("conversion", {"employees": 300}) == SALES
    with pytest.raises(InvalidOwnerRules, match="no owner for stage 'conversion'"):
        rules.owner("conversion", {"employees": 3})
    with pytest.raises(InvalidOwnerRules, match="no owner for stage 'awareness'"):
        rules.owner("awareness", {})


# ---------------------------------------------------------------- validation


def test_every_problem_is_listed_together() -> None:
    rules = OwnerRules(
        defaults={
            "awareness": MARKETING,
            "consideration": MARKETING,
            "nurture": MARKETING,
            "conversion": "crm",
        },
        overrides=[
            OwnerRule(SALES, ("retention", "advocacy", "lost"), description="sales keeps it"),
            OwnerRule("partners", ("retention",), (PARTNER,)),
            OwnerRule(SALES, ("retention", "advocacy", "lost"), description="again"),
            OwnerRule(SALES, ("ghost",)),
            OwnerRule(MARKETING, ("churned",), (BIG,)),
        ],
        teams=["Customer Success"],
        members={"founder": [MARKETING, "finance"], "system": [SALES]},
    )
    found = problems_of(rules)
    text = "\n".join(found)
    expected = [
        "teams: 'Customer Success' is not an identifier",
        "defaults: stage 'nurture' is not in funnel 'seed'",
        "defaults: stage 'conversion' defaults to unknown team 'crm'",
        "overrides[1] (team 'partners' in retention when channel in ['partner']): "
        "unknown team 'partners'",
        "overrides[1] (team 'partners' in retention when channel in ['partner']) can never "
        "apply: overrides[0] comes first",
        "overrides[2] (team 'sales' in retention, advocacy, lost: again) repeats overrides[0]",
        "overrides[3] (team 'sales' in ghost): stage 'ghost' is not in funnel 'seed'",
        "members: 'founder' holds unknown team(s) 'finance'",
        "members: 'system' is reserved for automated changes",
        "gap: stage 'churned' has no default owner and only conditional overrides cover it "
        "(overrides[4] (team 'marketing' in churned when employees >= 200)), so leads where "
        "not (employees >= 200) would have no owner",
    ]
    for fragment in expected:
        assert fragment in text, fragment
    assert len(found) == len(expected)
    assert [p.code for p in rules.problems(SEED)] == [
        "invalid-team",
        "unknown-stage",
        "unknown-team",
        "unknown-team",
        "shadowed-override",
        "duplicate-override",
        "unknown-stage",
        "unknown-team",
        "reserved-member",
        "no-owner",
    ]
    assert [p.subject for p in rules.problems(SEED)] == [
        "teams[2]",
        "defaults.nurture",
        "defaults.conversion",
        "overrides[1]",
        "overrides[1]",
        "overrides[2]",
        "overrides[3]",
        "members.founder",
        "members.system",
        "churned",
    ]
    with pytest.raises(InvalidOwnerRules, match=r"owner rules have 10 problem\(s\)") as info:
        rules.validate(SEED)
    assert "  - [no-owner] gap: stage 'churned'" in str(info.value)


def test_gap_without_any_covering_rule_names_the_stage() -> None:
    funnel = SEED.extend(
        add_stages=[Stage("onboarding", 35, StageKind.AFTER_PURCHASE, terminal=True)],
        add_transitions=[Transition("onboard", "conversion", "onboarding")],
    )
    assert funnel.stage("onboarding").owner is None
    with pytest.raises(InvalidOwnerRules) as info:
        OwnerRules.for_funnel(funnel)
    assert info.value.problems == (
        Problem(
            "no-owner",
            "gap: stage 'onboarding' has no default owner and no override covers it, so no "
            "lead there would have an owner; give the stage an owner (Stage(owner=...) or "
            "defaults={'onboarding': ...}) or add an unconditional override for it",
            "onboarding",
        ),
    )
    fixed = OwnerRules.for_funnel(funnel, defaults={"onboarding": SALES})
    assert fixed.owner("onboarding") == SALES
    covered = OwnerRules.for_funnel(funnel, overrides=[OwnerRule(SALES, ("onboarding",))])
    assert covered.owner("onboarding", {"x": 1}) == SALES


def test_unconditional_rule_shadows_later_rules_for_the_same_stages() -> None:
    rules = OwnerRules.for_funnel(
        SEED,
        overrides=[OwnerRule(SALES, ("consideration",)), OwnerRule(MARKETING, ("awareness",))],
    )
    assert rules.owner("consideration") == SALES
    found = OwnerRules(
        defaults=rules.defaults,
        overrides=[
            OwnerRule(SALES, ("consideration",)),
            OwnerRule(MARKETING, ("awareness",)),
            OwnerRule(MARKETING, ("consideration", "awareness"), (BIG,)),
        ],
    ).problems(SEED)
    assert len(found) == 1
    assert (found[0].code, found[0].subject) == ("shadowed-override", "overrides[2]")
    assert "overrides[0], overrides[1] come first and already match" in found[0].message


def test_wider_earlier_condition_shadows_narrower_later_one() -> None:
    wide = OwnerRule(SALES, (), (Condition("employees", (50,), "gte"),))
    narrow = OwnerRule(MARKETING, ("mql",), (BIG, PARTNER))
    funnel = presets.hubspot_lifecycle()
    with pytest.raises(InvalidOwnerRules, match=r"overrides\[1\].*can never apply"):
        OwnerRules.for_funnel(funnel, overrides=[wide, narrow])
    OwnerRules.for_funnel(funnel, overrides=[narrow, wide])
    OwnerRules.for_funnel(
        funnel,
        overrides=[OwnerRule(SALES, ("mql",), (BIG,)), OwnerRule(MARKETING, ("mql",), (SMALL,))],
    )


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        (Condition("c", ("a", "b")), Condition("c", ("a", "b", "x")), True),
        (Condition("c", ("a", "x")), Condition("c", ("a", "b")), False),
        (Condition("c", ("a",)), Condition("c", ("b",), "not_in"), True),
        (Condition("c", ("a",), "not_in"), Condition("c", ("a",)), False),
        (Condition("c", ("a", "b"), "not_in"), Condition("c", ("a",), "not_in"), True),
        (Condition("n", (300,), "gte"), BIG, True),
        (Condition("n", (100,), "gte"), Condition("n", (200,), "gte"), False),
        (Condition("n", (100,), "lt"), Condition("n", (200,), "lt"), True),
        (Condition("n", (250, 300)), Condition("n", (200,), "gte"), True),
        (Condition("n", (250, "x")), Condition("n", (200,), "gte"), False),
        (Condition("n", (10, 20)), Condition("n", (200,), "lt"), True),
        (Condition("n", (200,), "gte"), Condition("n", (5, "x"), "not_in"), True),
        (Condition("n", (200,), "gte"), Condition("n", (500,), "not_in"), False),
        (Condition("n", (200,), "lt"), Condition("n", (500,), "not_in"), True),
        (Condition("n", (200,), "gte"), Condition("n", (1,)), False),
        (Condition("n", (200,), "gte"), Condition("other", (200,), "gte"), False),
    ],
)
def test_condition_implies(first: Condition, second: Condition, expected: bool) -> None:
    first = Condition("employees", first.values, first.op) if first.attribute == "n" else first
    if second.attribute == "n":
        second = Condition("employees", second.values, second.op)
    assert first.implies(second) is expected


# ---------------------------------------------------------------- solo mode and acting


def test_solo_mode_keeps_owners_and_lets_the_founder_act_for_every_team() -> None:
    normal = OwnerRules.for_funnel(SEED)
    solo = OwnerRules.solo(SEED)
    for stage in SEED.stage_names:
        assert solo.owner(stage) == normal.owner(stage)
    assert solo.owner("consideration") != solo.owner("conversion")  # still a handoff
    founder = Actor("founder")
    assert solo.may_act(founder, MARKETING)
    assert solo.may_act(founder, SALES)
    assert solo.teams_of(founder) == (MARKETING, SALES)
    assert not solo.may_act(Actor("ana_sdr"), SALES)
    # the founder is the declared member of every team: nobody else can claim one
    assert not solo.may_act(Actor("ana_sdr", SALES), SALES)
    assert not solo.may_act(SYSTEM, SALES)
    assert solo.is_solo
    assert solo.solo_member == "founder"
    assert not normal.is_solo
    assert normal.solo_member is None


def test_solo_mode_with_extra_teams_and_another_person() -> None:
    solo = OwnerRules.solo(SEED, "owner_operator", teams=["partners"])
    assert solo.teams == (MARKETING, SALES, "partners")
    assert solo.members == {"owner_operator": (MARKETING, SALES, "partners")}
    assert solo.may_act(Actor("owner_operator"), "partners")
    assert not solo.may_act(Actor("founder"), SALES)


def test_may_act_by_actor_team_or_membership() -> None:
    rules = OwnerRules.for_funnel(SEED, teams=["partners"], members={"bo_ae": [SALES, "partners"]})
    assert rules.may_act(Actor("ana_sdr", MARKETING), MARKETING)
    assert not rules.may_act(Actor("ana_sdr", MARKETING), SALES)
    assert rules.may_act(Actor("bo_ae"), SALES)
    assert rules.may_act(Actor("bo_ae", MARKETING), "partners")
    assert rules.may_act(Actor("bo_ae", MARKETING), MARKETING)
    assert not rules.may_act(Actor("bo_ae"), MARKETING)
    assert not rules.may_act(Actor("nobody"), SALES)
    assert rules.teams_of(Actor("bo_ae", MARKETING)) == (MARKETING, SALES, "partners")
    assert rules.teams_of(SYSTEM) == ()
    assert not rules.is_solo


def test_system_acts_for_no_team_even_if_listed() -> None:
    rules = OwnerRules(defaults={}, members={"system": [SALES]})
    assert not rules.may_act(SYSTEM, SALES)


# ---------------------------------------------------------------- dicts and files

SCHEMA_EXAMPLE = """\
teams = ["marketing", "sales", "partners"]
solo = "founder"

[defaults]            # optional; stage -> team
retention = "marketing"

[members]             # optional
ana_sdr = ["marketing"]

[[overrides]]
team = "partners"
stages = ["consideration", "conversion"]
when = [{ attribute = "channel", op = "in", values = ["partner"] }]
description = "Partner-sourced leads are worked by the partner team"

[[overrides]]
team = "sales"
stages = ["consideration"]
when = [{ attribute = "employees", op = "gte", values = [200] }]
"""


def rich_rules() -> OwnerRules:
    return OwnerRules.for_funnel(
        SEED,
        teams=["partners"],
        defaults={"retention": MARKETING},
        members={"founder": [MARKETING, SALES], "ana_sdr": [MARKETING]},
        overrides=[
            OwnerRule("partners", ("consideration", "conversion"), (PARTNER,), 'Partner "deals"\n'),
            OwnerRule(SALES, ("consideration",), (BIG, Condition("vip", (True,))), "big ones"),
            OwnerRule(MARKETING, (), (Condition("score", (0.5,), "lt"),)),
        ],
    )


def test_to_dict_is_the_file_schema() -> None:
    data = OwnerRules.for_funnel(
        SEED,
        teams=["partners"],
        overrides=[OwnerRule("partners", ("consideration",), (PARTNER,), "partner leads")],
    ).to_dict()
    assert data["teams"] == [MARKETING, SALES, "partners"]
    assert data["defaults"]["consideration"] == MARKETING
    assert data["members"] == {}
    assert data["overrides"] == [
        {
            "team": "partners",
            "stages": ["consideration"],
            "when": [{"attribute": "channel", "op": "in", "values": ["partner"]}],
            "description": "partner leads",
        }
    ]
    json.dumps(data)


def test_dict_round_trip() -> None:
    rules = rich_rules()
    assert OwnerRules.from_dict(rules.to_dict()) == rules
    assert OwnerRules.from_dict(rules.to_dict(), funnel=SEED) == rules
    assert OwnerRules.from_dict(json.loads(json.dumps(rules.to_dict()))) == rules


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_file_round_trip(tmp_path: Path, suffix: str) -> None:
    rules = rich_rules()
    path = tmp_path / f"owners{suffix}"
    save_owner_rules(rules, path)
    assert load_owner_rules(path, SEED) == rules
    assert load_owner_rules(str(path), SEED) == rules


def test_load_the_documented_schema(tmp_path: Path) -> None:
    path = tmp_path / "owners.toml"
    path.write_text(SCHEMA_EXAMPLE, encoding="utf-8")
    rules = load_owner_rules(path, SEED)
    assert rules.is_solo
    assert rules.members["founder"] == (MARKETING, SALES, "partners")
    assert rules.owner("retention") == MARKETING
    assert rules.owner("awareness") == MARKETING  # from the funnel
    assert rules.owner("conversion", {"channel": "partner"}) == "partners"
    assert rules.owner("consideration", {"employees": 250}) == SALES
    assert rules.may_act(Actor("founder"), "partners")
    assert rules.overrides[0].description.startswith("Partner-sourced")


def test_solo_key_in_a_file_knows_the_funnel_teams(tmp_path: Path) -> None:
    path = tmp_path / "solo.json"
    path.write_text('{"solo": "founder"}', encoding="utf-8")
    rules = load_owner_rules(path, SEED)
    assert rules == OwnerRules.solo(SEED)


def test_file_errors_name_every_location(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        """\
teams = ["partners", 3]
colour = "blue"
solo = 7

[defaults]
retention = 5

[members]
ana = "sales"

[[overrides]]
team = "partners"
when = [{ attribute = "channel", values = ["partner"] }]

[[overrides]]
stages = "consideration"
nope = 1
when = [
  { attribute = "employees", op = "ge", values = [200] },
  { attribute = "employees", op = "gte", values = ["200"] },
  { op = "in" },
  "channel",
]
""",
        encoding="utf-8",
    )
    with pytest.raises(InvalidOwnerRules) as info:
        load_owner_rules(path, SEED)
    found = messages(info.value)
    assert all(p.startswith(f"{path}: ") for p in found)
    text = "\n".join(p.removeprefix(f"{path}: ") for p in found)
    for fragment in [
        "colour: unknown key; expected one of teams, defaults, members, overrides, solo",
        "teams[1]: expected a non-empty string (got 3 that is a int)",
        "defaults.retention: expected a team name (got 5 that is a int)",
        "members.ana: expected a list of strings (got 'sales' that is a str)",
        "solo: expected the name of the one person (got 7 that is a int)",
        "overrides[1].nope: unknown key; expected one of team, stages, when, description",
        "overrides[1].team: missing",
        "overrides[1].stages: expected a list of strings (got 'consideration' that is a str)",
        "overrides[1].when[0].op: expected one of 'in', 'not_in', 'gte', 'lt' (got 'ge')",
        "overrides[1].when[1].values[0]: op 'gte' needs a finite number such as 200 "
        "(got '200' that is a str)",
        "overrides[1].when[2].attribute: missing",
        "overrides[1].when[2].values: missing",
        "overrides[1].when[3]: expected a table (a mapping) (got 'channel' that is a str)",
    ]:
        assert fragment in text, fragment
    assert len(found) == 13
    assert "overrides[0]" not in text


def test_file_with_valid_shape_reports_rule_problems_with_the_file_name(tmp_path: Path) -> None:
    path = tmp_path / "owners.json"
    path.write_text(
        json.dumps({"overrides": [{"team": "partners", "stages": ["ghost"]}]}), encoding="utf-8"
    )
    with pytest.raises(InvalidOwnerRules) as info:
        load_owner_rules(path, SEED)
    first, second = info.value.problems
    assert first.message.startswith(f"{path}: overrides[0] (team 'partners' in ghost)")
    assert (first.code, first.subject) == ("unknown-stage", "overrides[0]")
    assert "unknown team 'partners'" in second.message
    assert (second.code, second.subject) == ("unknown-team", "overrides[0]")


def test_unreadable_files(tmp_path: Path) -> None:
    broken_toml = tmp_path / "broken.toml"
    broken_toml.write_text("teams = [\n", encoding="utf-8")
    with pytest.raises(InvalidOwnerRules, match=r"broken\.toml: not valid TOML"):
        load_owner_rules(broken_toml, SEED)
    broken_json = tmp_path / "broken.json"
    broken_json.write_text('{"teams": ]', encoding="utf-8")
    not_json = r"broken\.json: not valid JSON: .*\(at line 1, column"
    with pytest.raises(InvalidOwnerRules, match=not_json):
        load_owner_rules(broken_json, SEED)
    not_utf8 = tmp_path / "latin.toml"
    not_utf8.write_bytes(b'teams = ["\xe9"]')
    with pytest.raises(InvalidOwnerRules, match="not UTF-8"):
        load_owner_rules(not_utf8, SEED)
    top_list = tmp_path / "list.json"
    top_list.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(InvalidOwnerRules, match=r"document: expected a table"):
        load_owner_rules(top_list, SEED)
    with pytest.raises(InvalidOwnerRules, match=r"name the file with \.toml or \.json"):
        load_owner_rules(tmp_path / "owners.yaml", SEED)
    with pytest.raises(InvalidOwnerRules, match=r"name the file with \.toml or \.json"):
        save_owner_rules(OwnerRules.for_funnel(SEED), tmp_path / "owners.yaml")
    assert not (tmp_path / "owners.yaml").exists()
    with pytest.raises(FileNotFoundError):
        load_owner_rules(tmp_path / "missing.toml", SEED)


def test_integers_beyond_toml_range_need_json(tmp_path: Path) -> None:
    rules = OwnerRules(
        defaults={}, overrides=[OwnerRule(SALES, when=(Condition("n", (2**70,), "gte"),))]
    )
    with pytest.raises(InvalidOwnerRules, match=r"overrides\[0\].when\[0\].values\[0\]"):
        save_owner_rules(rules, tmp_path / "big.toml")
    save_owner_rules(rules, tmp_path / "big.json")
    data = json.loads((tmp_path / "big.json").read_text(encoding="utf-8"))
    assert OwnerRules.from_dict(data) == rules


# ---------------------------------------------------------------- properties

ATTRIBUTES = ("channel", "employees", "country")
TEAMS = (MARKETING, SALES, "partners")
WORDS = ("partner", "web", "BR", "")

scalars = st.one_of(
    st.integers(-3, 3),
    st.sampled_from(WORDS),
    st.booleans(),
    st.floats(-3, 3, allow_nan=False),
)
numbers = st.one_of(st.integers(-3, 3), st.floats(-3, 3, allow_nan=False))
conditions = st.one_of(
    st.builds(
        Condition,
        st.sampled_from(ATTRIBUTES),
        st.lists(scalars, min_size=1, max_size=3).map(tuple),
        st.sampled_from(["in", "not_in"]),
    ),
    st.builds(
        Condition,
        st.sampled_from(ATTRIBUTES),
        numbers.map(lambda v: (v,)),
        st.sampled_from(["gte", "lt"]),
    ),
)
lead_attributes = st.dictionaries(
    st.sampled_from(ATTRIBUTES),
    st.one_of(
        st.none(),
        st.integers(-4, 4),
        st.sampled_from(WORDS),
        st.booleans(),
        st.floats(-4, 4),
    ),
)


@st.composite
def rule_sets(draw: st.DrawFn, funnel: Funnel = SEED) -> OwnerRules:
    stages = funnel.stage_names
    rules = draw(
        st.lists(
            st.builds(
                OwnerRule,
                st.sampled_from(TEAMS),
                st.lists(st.sampled_from(stages), max_size=2, unique=True).map(tuple),
                st.lists(conditions, max_size=2).map(tuple),
            ),
            max_size=4,
        )
    )
    dropped = draw(st.sets(st.sampled_from(stages), max_size=2))
    defaults = {s.name: s.owner or MARKETING for s in funnel.stages if s.name not in dropped}
    return OwnerRules(defaults=defaults, overrides=rules, teams=TEAMS)


@given(rule_sets(), lead_attributes)
def test_sound_rules_give_exactly_one_known_team_for_every_stage(
    rules: OwnerRules, attributes: Mapping[str, Any]
) -> None:
    assume(not rules.problems(SEED))
    for stage in SEED.stage_names:
        team = rules.owner(stage, attributes)
        assert isinstance(team, str)
        assert team in rules.teams


@given(rule_sets(), lead_attributes)
def test_a_stage_without_a_reported_gap_always_has_an_owner(
    rules: OwnerRules, attributes: Mapping[str, Any]
) -> None:
    gaps = {p.subject for p in rules.problems(SEED) if p.code == "no-owner"}
    for stage in SEED.stage_names:
        if stage in gaps:
            with pytest.raises(InvalidOwnerRules):
                rules.owner(stage, {})  # a lead with no attributes matches no condition
        else:
            assert rules.owner(stage, attributes) in rules.teams


@given(rule_sets(), lead_attributes)
def test_rules_reported_as_never_applying_never_apply(
    rules: OwnerRules, attributes: Mapping[str, Any]
) -> None:
    never = ("shadowed-override", "duplicate-override")
    dead = {p.subject for p in rules.problems(SEED) if p.code in never}
    for stage in SEED.stage_names:
        chosen = rules.matching_rule(stage, attributes)
        if chosen is not None:
            index = next(i for i, r in enumerate(rules.overrides) if r is chosen)
            assert f"overrides[{index}]" not in dead


@given(conditions, conditions, lead_attributes)
def test_implies_is_sound(a: Condition, b: Condition, attributes: Mapping[str, Any]) -> None:
    if a.implies(b) and a.matches(attributes):
        assert b.matches(attributes)


identifiers = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)


@st.composite
def any_rule_sets(draw: st.DrawFn) -> OwnerRules:
    teams = draw(st.lists(identifiers, max_size=3))
    known = (*BUILTIN_TEAMS, *teams)
    overrides = draw(
        st.lists(
            st.builds(
                OwnerRule,
                st.sampled_from(known),
                st.lists(identifiers, max_size=3).map(tuple),
                st.lists(conditions, max_size=3).map(tuple),
                st.text(max_size=20),
            ),
            max_size=4,
        )
    )
    defaults = draw(st.dictionaries(identifiers, st.sampled_from(known), max_size=4))
    members = draw(
        st.dictionaries(
            st.text(min_size=1, max_size=10),
            st.lists(st.sampled_from(known), max_size=3).map(tuple),
            max_size=3,
        )
    )
    return OwnerRules(defaults=defaults, overrides=overrides, teams=teams, members=members)


@given(any_rule_sets())
def test_to_dict_from_dict_round_trips(rules: OwnerRules) -> None:
    assert OwnerRules.from_dict(rules.to_dict()) == rules
    assert OwnerRules.from_dict(json.loads(json.dumps(rules.to_dict()))) == rules


@given(any_rule_sets())
def test_saved_files_read_back_equal(rules: OwnerRules) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for suffix in (".toml", ".json"):
            path = Path(tmp) / f"owners{suffix}"
            save_owner_rules(rules, path)
            text = path.read_text(encoding="utf-8")
            data = tomllib.loads(text) if suffix == ".toml" else json.loads(text)
            assert OwnerRules.from_dict(data) == rules


# ---------------------------------------------------------------- problems with codes, files


def test_an_owner_file_with_four_problems_lists_all_four(tmp_path: Path) -> None:
    """Problems of the document's shape no longer hide the problems of its rules."""
    path = tmp_path / "owners.toml"
    path.write_text(
        """\
colour = "blue"

[defaults]
retention = 5

[members]
ana = ["finance"]

[[overrides]]
team = "partnrs"
stages = ["consideration"]
""",
        encoding="utf-8",
    )
    with pytest.raises(InvalidOwnerRules) as info:
        load_owner_rules(path, SEED)
    problems = info.value.problems
    assert [(p.code, p.subject) for p in problems] == [
        ("unknown-key", "colour"),
        ("wrong-type", "defaults.retention"),
        ("unknown-team", "overrides[0]"),
        ("unknown-team", "members.ana"),
    ]
    assert all(p.message.startswith(f"{path}: ") for p in problems)
    assert "owner rules have 4 problem(s)" in str(info.value)
    for problem in problems:
        assert f"  - {problem}" in str(info.value)


def test_rule_problems_keep_the_index_of_their_override_in_the_document() -> None:
    data = {
        "overrides": [
            {"team": "sales", "stages": ["consideration"], "when": "x"},
            {"team": "partnrs", "stages": ["consideration"]},
        ]
    }
    with pytest.raises(InvalidOwnerRules) as info:
        OwnerRules.from_dict(data, funnel=SEED)
    assert [(p.code, p.subject) for p in info.value.problems] == [
        ("wrong-type", "overrides[0].when"),
        ("unknown-team", "overrides[1]"),
    ]
    assert info.value.problems[1].message.startswith("overrides[1] (team 'partnrs'")


def test_duplicate_json_keys_in_an_owner_file_are_problems(tmp_path: Path) -> None:
    path = tmp_path / "owners.json"
    path.write_text('{"defaults": {"retention": "sales", "retention": "marketing"}}', "utf-8")
    with pytest.raises(InvalidOwnerRules) as info:
        load_owner_rules(path, SEED)
    assert [(p.code, p.subject) for p in info.value.problems] == [
        ("duplicate-key", "defaults.retention")
    ]


def test_condition_and_routing_problems_have_codes() -> None:
    with pytest.raises(InvalidOwnerRules) as info:
        Condition("n", (1, 2), "gte")
    assert [(p.code, p.subject) for p in info.value.problems] == [
        ("invalid-condition", "Condition('n').values")
    ]
    with pytest.raises(InvalidOwnerRules) as info:
        OwnerRules(defaults={}).owner("awareness", {})
    assert [(p.code, p.subject) for p in info.value.problems] == [("no-owner", "awareness")]


def test_saved_toml_is_what_tomli_w_writes_and_reads_back(tmp_path: Path) -> None:
    import tomli_w  # noqa: PLC0415

    rules = rich_rules()
    path = tmp_path / "owners.toml"
    save_owner_rules(rules, path)
    text = path.read_text(encoding="utf-8")
    assert text == tomli_w.dumps(rules.to_dict())
    assert tomllib.loads(text) == rules.to_dict()
    assert load_owner_rules(path, SEED) == rules


def test_a_lone_surrogate_needs_json(tmp_path: Path) -> None:
    rules = OwnerRules.for_funnel(
        SEED, overrides=(OwnerRule(SALES, ("consideration",), (BIG,), "half \ud83d"),)
    )
    with pytest.raises(InvalidOwnerRules) as info:
        save_owner_rules(rules, tmp_path / "owners.toml")
    (problem,) = info.value.problems
    assert (problem.code, problem.subject) == ("format-error", "overrides[0].description")
    assert "U+D83D" in problem.message
    assert not (tmp_path / "owners.toml").exists()
    save_owner_rules(rules, tmp_path / "owners.json")
    assert load_owner_rules(tmp_path / "owners.json", SEED) == rules


def test_owner_files_are_read_by_the_file_adapter() -> None:
    from buyerjourney._adapters import files  # noqa: PLC0415
    from buyerjourney._core import owners  # noqa: PLC0415

    assert buyerjourney.load_owner_rules is files.load_owner_rules
    assert buyerjourney.save_owner_rules is files.save_owner_rules
    assert not hasattr(owners, "load_owner_rules")
    assert not hasattr(owners, "save_owner_rules")


# ---------------------------------------------------------------- saving only what the funnel lacks


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_save_with_the_funnel_writes_only_the_defaults_that_differ(
    tmp_path: Path, suffix: str
) -> None:
    """The docs said so; every stage's default used to be written, pinning them all."""
    rules = OwnerRules.for_funnel(
        SEED, teams=("customer_success",), defaults={"retention": "customer_success"}
    )
    path = tmp_path / f"owners{suffix}"
    save_owner_rules(rules, path, funnel=SEED)
    text = path.read_text(encoding="utf-8")
    document = json.loads(text) if suffix == ".json" else tomllib.loads(text)
    assert document["defaults"] == {"retention": "customer_success"}
    assert document["teams"] == ["customer_success"]
    assert load_owner_rules(path, SEED) == rules


def test_a_saved_file_does_not_pin_owners_the_funnel_changes_later(tmp_path: Path) -> None:
    rules = OwnerRules.for_funnel(SEED, defaults={"retention": "marketing"})
    path = tmp_path / "owners.toml"
    save_owner_rules(rules, path, funnel=SEED)
    later = SEED.extend(
        replace_stages=[Stage("consideration", 20, owner="sales", description="now sales")]
    )
    reloaded = load_owner_rules(path, later)
    assert reloaded.owner("consideration") == SALES  # the funnel's new owner
    assert reloaded.owner("retention") == MARKETING  # the file's own default
    # Without the funnel, the file pins every default, as before.
    save_owner_rules(rules, path)
    assert load_owner_rules(path, later).owner("consideration") == MARKETING


# ---------------------------------------------------------------- files that used to crash


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("teams = " + "[" * 50_000 + "]" * 50_000 + "\n", "nested more than 32 levels"),
        ("[[overrides]]\nteam = " + "{a=" * 50_000 + "1" + "}" * 50_000, "nested more than"),
        ('[[overrides]]\nteam = "sales"\nwhen = [{ attribute = "employees", op = "gte", '
         f"values = [{'9' * 5000}] }}]\n", "an integer has more than 4300 digits"),
    ],
    ids=["deep-array", "deep-table", "huge-int"],
)  # fmt: skip
def test_hostile_owner_files_are_invalid_owner_rules(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = tmp_path / "owners.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InvalidOwnerRules) as info:
        load_owner_rules(path, SEED)
    ((problem),) = info.value.problems
    assert problem.code == "format-error"
    assert problem.message.startswith(f"{path}: ")
    assert expected in problem.message


def test_an_endless_owner_file_is_refused_at_the_bound(tmp_path: Path) -> None:
    if not Path("/dev/zero").exists():
        pytest.skip("needs /dev/zero")
    link = tmp_path / "owners.json"
    link.symlink_to("/dev/zero")
    with pytest.raises(InvalidOwnerRules, match="larger than 4 MiB"):
        load_owner_rules(link, SEED)


def test_a_byte_order_mark_starts_an_owner_file(tmp_path: Path) -> None:
    path = tmp_path / "owners.toml"
    path.write_bytes(b"\xef\xbb\xbf" + b'[defaults]\nretention = "marketing"\n')
    assert load_owner_rules(path, SEED).owner("retention") == MARKETING


def test_a_team_with_declared_members_cannot_be_claimed() -> None:
    """Issue regression: with members declared, an actor must be one of them to act for it."""
    rules = OwnerRules.for_funnel(SEED, members={"mia": [SALES]})
    assert rules.may_act(Actor("mia"), SALES)
    assert rules.may_act(Actor("mia", MARKETING), SALES)
    assert not rules.may_act(Actor("eve", SALES), SALES)  # claims sales, is not a member
    assert rules.may_act(Actor("eve", MARKETING), MARKETING)  # marketing declared nobody
