"""Exact problem reports and edge cases of ``buyerjourney._core.owners``, found by mutation testing.

The other owner tests check that a problem is found; these check the whole text of
each problem (it names the rule, the stage, the known teams and the fix), the type
errors of the constructors, the boundaries of ``Condition.implies``, and the details
of the file formats. See docs/mutation.md.
"""

from __future__ import annotations

import json
import numbers
from pathlib import Path

import pytest

from buyerjourney import Funnel, Stage, StageKind, Transition
from buyerjourney._adapters.files import load_owner_rules, save_owner_rules
from buyerjourney._core.owners import Condition, OwnerRule, OwnerRules
from buyerjourney.errors import InvalidOwnerRules


def messages(error: InvalidOwnerRules) -> tuple[str, ...]:
    return tuple(p.message for p in error.problems)


FUNNEL = Funnel(
    "tiny",
    [
        Stage("a", 1, initial=True, owner="marketing"),
        Stage("b", 2, owner="sales"),
        Stage("won", 3, StageKind.WON, terminal=True, owner="sales"),
    ],
    [Transition("go", "a", "b"), Transition("win", "b", "won")],
)
DEFAULTS = {"a": "marketing", "b": "sales", "won": "sales"}
ENTERPRISE = Condition("segment", ("enterprise",))
BIG = Condition("employees", (1000,), "gte")
ADD_TEAM = "add it to teams or fix the name"
GIVE_B_AN_OWNER = (
    "give the stage an owner (Stage(owner=...) or defaults={'b': ...}) "
    "or add an unconditional override for it"
)

PROBLEM_CASES = [
    pytest.param(
        OwnerRules(DEFAULTS, teams=("key accounts",)),
        ["teams: 'key accounts' is not an identifier; use letters, digits and _"],
        id="team-not-identifier",
    ),
    pytest.param(
        OwnerRules({**DEFAULTS, "zz": "marketing", "b": "partners"}),
        [
            "defaults: stage 'b' defaults to unknown team 'partners' (known: marketing, sales); "
            + ADD_TEAM,
            "defaults: stage 'zz' is not in funnel 'tiny' (stages: a, b, won)",
        ],
        id="defaults",
    ),
    pytest.param(
        OwnerRules(
            DEFAULTS, overrides=(OwnerRule("partners", ("b", "zz"), (ENTERPRISE,), "resellers"),)
        ),
        [
            "overrides[0] (team 'partners' in b, zz when segment in ['enterprise']: resellers): "
            "stage 'zz' is not in funnel 'tiny' (stages: a, b, won)",
            "overrides[0] (team 'partners' in b, zz when segment in ['enterprise']: resellers): "
            "unknown team 'partners' (known: marketing, sales); " + ADD_TEAM,
        ],
        id="override-unknown-stage-and-team",
    ),
    pytest.param(
        OwnerRules(
            DEFAULTS,
            overrides=(
                OwnerRule("sales", ("a",), (ENTERPRISE,)),
                OwnerRule("sales", ("a",), (Condition("segment", ("enterprise",)),)),
            ),
        ),
        [
            "overrides[1] (team 'sales' in a when segment in ['enterprise']) repeats "
            "overrides[0]; remove one of them"
        ],
        id="repeat",
    ),
    pytest.param(
        OwnerRules(
            DEFAULTS,
            overrides=(
                OwnerRule("sales", ("a",), (BIG,)),
                OwnerRule("marketing", ("a",), (Condition("employees", (5000,), "gte"),)),
            ),
        ),
        [
            "overrides[1] (team 'marketing' in a when employees >= 5000) can never apply: "
            "overrides[0] comes first and already matches every lead it would match; "
            "move it earlier, narrow the earlier rule, or remove it"
        ],
        id="shadowed-by-one",
    ),
    pytest.param(
        OwnerRules(
            DEFAULTS,
            teams=("partners",),
            overrides=(
                OwnerRule("sales", ("a", "won")),
                OwnerRule("marketing", ("b",)),
                OwnerRule("partners", (), (ENTERPRISE,)),
            ),
        ),
        [
            "overrides[2] (team 'partners' in every stage when segment in ['enterprise']) can "
            "never apply: overrides[0], overrides[1] come first and already match every lead "
            "it would match; move it earlier, narrow the earlier rule, or remove it"
        ],
        id="shadowed-by-two",
    ),
    pytest.param(
        OwnerRules(
            DEFAULTS,
            members={"": ("sales",), "system": ("sales",), "ann": ("sales", "ghosts", "ops")},
        ),
        [
            "members: a member has an empty name",
            "members: 'system' is reserved for automated changes and cannot hold teams; "
            "give the person another name",
            "members: 'ann' holds unknown team(s) 'ghosts', 'ops' (known: marketing, sales); "
            + ADD_TEAM,
        ],
        id="members",
    ),
    pytest.param(
        OwnerRules(
            {"a": "marketing", "won": "sales"},
            overrides=(
                OwnerRule("sales", ("b",), (ENTERPRISE, BIG)),
                OwnerRule("sales", (), (Condition("channel", ("partner",), "not_in"),)),
            ),
        ),
        [
            "gap: stage 'b' has no default owner and only conditional overrides cover it "
            "(overrides[0] (team 'sales' in b when segment in ['enterprise'] and "
            "employees >= 1000); overrides[1] (team 'sales' in every stage when channel "
            "not in ['partner'])), so leads where not (segment in ['enterprise'] and "
            "employees >= 1000) and not (channel not in ['partner']) would have no owner; "
            + GIVE_B_AN_OWNER
        ],
        id="gap-with-conditional-overrides",
    ),
    pytest.param(
        OwnerRules({"a": "marketing", "won": "sales"}),
        [
            "gap: stage 'b' has no default owner and no override covers it, so no lead there "
            "would have an owner; " + GIVE_B_AN_OWNER
        ],
        id="gap",
    ),
]


@pytest.mark.parametrize(("rules", "expected"), PROBLEM_CASES)
def test_problems_are_reported_exactly(rules: OwnerRules, expected: list[str]) -> None:
    assert [p.message for p in rules.problems(FUNNEL)] == expected
    with pytest.raises(InvalidOwnerRules) as info:
        rules.validate(FUNNEL)
    assert messages(info.value) == tuple(expected)
    assert info.value.problems == tuple(rules.problems(FUNNEL))


EXPECTED_CODES = {
    "team-not-identifier": [("invalid-team", "teams[2]")],
    "defaults": [("unknown-team", "defaults.b"), ("unknown-stage", "defaults.zz")],
    "override-unknown-stage-and-team": [
        ("unknown-stage", "overrides[0]"),
        ("unknown-team", "overrides[0]"),
    ],
    "repeat": [("duplicate-override", "overrides[1]")],
    "shadowed-by-one": [("shadowed-override", "overrides[1]")],
    "shadowed-by-two": [("shadowed-override", "overrides[2]")],
    "members": [
        ("invalid-member", "members"),
        ("reserved-member", "members.system"),
        ("unknown-team", "members.ann"),
    ],
    "gap-with-conditional-overrides": [("no-owner", "b")],
    "gap": [("no-owner", "b")],
}


@pytest.mark.parametrize(("rules", "expected"), PROBLEM_CASES)
def test_problems_have_their_code_and_subject(
    rules: OwnerRules, expected: list[str], request: pytest.FixtureRequest
) -> None:
    codes = EXPECTED_CODES[request.node.callspec.id]
    assert [(p.code, p.subject) for p in rules.problems(FUNNEL)] == codes
    assert len(codes) == len(expected)


def test_sound_rules_have_no_problems() -> None:
    rules = OwnerRules(DEFAULTS, overrides=(OwnerRule("sales", ("a",), (BIG,)),))
    assert rules.problems(FUNNEL) == []


# ---------------------------------------------------------------- Condition.implies


@pytest.mark.parametrize(
    ("mine", "theirs", "expected"),
    [
        (Condition("x", ("a", "b")), Condition("x", ("a", "b")), True),
        (Condition("x", ("a", "b")), Condition("x", ("a",)), False),
        (Condition("x", (1000,)), Condition("x", (1000,), "gte"), True),
        (Condition("x", (999,)), Condition("x", (1000,), "gte"), False),
        (Condition("x", (999,)), Condition("x", (1000,), "lt"), True),
        (Condition("x", (1000,)), Condition("x", (1000,), "lt"), False),
        (Condition("x", ("a",), "not_in"), Condition("x", ("a",), "not_in"), True),
        (Condition("x", ("a", "b"), "not_in"), Condition("x", ("a",), "not_in"), True),
        (Condition("x", ("a",), "not_in"), Condition("x", ("a", "b"), "not_in"), False),
        (Condition("x", ("a",), "not_in"), Condition("x", ("b",)), False),
        (Condition("x", (5,), "gte"), Condition("x", (5,), "gte"), True),
        (Condition("x", (5,), "gte"), Condition("x", (6,), "gte"), False),
        (Condition("x", (5,), "lt"), Condition("x", (5,), "lt"), True),
        (Condition("x", (6,), "lt"), Condition("x", (5,), "lt"), False),
        (Condition("x", (10,), "gte"), Condition("x", (9,), "not_in"), True),
        (Condition("x", (10,), "gte"), Condition("x", (10,), "not_in"), False),
        (Condition("x", (10,), "lt"), Condition("x", (10,), "not_in"), True),
        (Condition("x", (10,), "lt"), Condition("x", (9,), "not_in"), False),
        (Condition("x", (10,), "gte"), Condition("y", (10,), "gte"), False),
    ],
)
def test_implies_at_its_boundaries(mine: Condition, theirs: Condition, expected: bool) -> None:
    assert mine.implies(theirs) is expected


def test_rules_print_their_stages_and_conditions() -> None:
    assert str(OwnerRule("sales")) == "team 'sales' in every stage"
    assert str(OwnerRule("sales", ("a", "b"), (ENTERPRISE, BIG))) == (
        "team 'sales' in a, b when segment in ['enterprise'] and employees >= 1000"
    )


# ---------------------------------------------------------------- constructors


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: OwnerRules({"a": 1}), "'defaults' maps stage names to team names (got 'a': 1)"),
        (
            lambda: OwnerRules({1: "sales"}),
            "'defaults' maps stage names to team names (got 1: 'sales')",
        ),
        (
            lambda: OwnerRules(["a"]),
            "'defaults' must be a mapping of stage to team (got ['a'] that is a list)",
        ),
        (
            lambda: OwnerRules({}, members=[]),
            "'members' must be a mapping of person to teams (got [] that is a list)",
        ),
        (
            lambda: OwnerRules({}, members={1: ("sales",)}),
            "'members' keys must be person names (str) (got 1 that is a int)",
        ),
        (
            lambda: OwnerRule("sales", "a"),
            "'stages' must be a tuple or list (got 'a'); write a one-item tuple such as ('a',)",
        ),
        (lambda: OwnerRule("sales", ("a", 1)), "'stages[1]' must be a str (got 1 that is a int)"),
        (
            lambda: OwnerRule("sales", (), ("x",)),
            "'when[0]' must be a Condition (got 'x' that is a str)",
        ),
        (
            lambda: OwnerRules({}, overrides=("x",)),
            "'overrides[0]' must be a OwnerRule (got 'x' that is a str)",
        ),
        (lambda: OwnerRules({}, teams=(1,)), "'teams[0]' must be a str (got 1 that is a int)"),
        (
            lambda: OwnerRules.for_funnel(FUNNEL, teams="partners"),
            "'teams' must be a tuple or list (got 'partners'); "
            "write a one-item tuple such as ('partners',)",
        ),
        (
            lambda: Condition("seg", "x"),
            "'values' must be a tuple or list (got 'x'); write a one-item tuple such as ('x',)",
        ),
    ],
)
def test_type_errors_name_the_field_and_what_was_received(build: object, message: str) -> None:
    with pytest.raises(TypeError) as info:
        build()  # type: ignore[operator]
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("build", "problem"),
    [
        (
            lambda: Condition("seg", ()),
            "Condition('seg').values: op 'in' needs at least one value (got [])",
        ),
        (
            lambda: Condition("", ("x",)),
            "Condition('').attribute: expected a non-empty attribute name (got '' that is a str)",
        ),
        (
            lambda: Condition("seg", (float("nan"),)),
            "Condition('seg').values[0]: expected a str, bool or finite number "
            "(got nan that is a float)",
        ),
    ],
)
def test_malformed_conditions_are_located(build: object, problem: str) -> None:
    with pytest.raises(InvalidOwnerRules) as info:
        build()  # type: ignore[operator]
    assert messages(info.value) == (problem,)


def test_a_gap_found_at_routing_time_is_explained() -> None:
    with pytest.raises(InvalidOwnerRules) as info:
        OwnerRules({}).owner("b", {"x": 1})
    assert messages(info.value) == (
        "no owner for stage 'b' and attributes {'x': 1}: the stage has no default and no "
        "override matched; add a default or an unconditional override, and call "
        "validate(funnel) to find every gap",
    )


# ---------------------------------------------------------------- documents and files


def test_document_problems_are_located_exactly() -> None:
    with pytest.raises(InvalidOwnerRules) as info:
        OwnerRules.from_dict({"surprise": 1, "defaults": 3, "members": [], "overrides": "x"})
    assert messages(info.value) == (
        "surprise: unknown key; expected one of teams, defaults, members, overrides, solo",
        "defaults: expected a table (a mapping) (got 3 that is a int)",
        "members: expected a table (a mapping) (got [] that is a list)",
        "overrides: expected a list of rules (got 'x' that is a str)",
    )
    with pytest.raises(InvalidOwnerRules) as info:
        OwnerRules.from_dict(
            {
                "overrides": [
                    {"team": 5, "description": 3, "when": "x", "extra": 1},
                    {"team": "sales", "when": [{"attribute": "a", "values": [1], "oops": 2}]},
                    {"team": "", "description": "d"},
                ]
            }
        )
    assert messages(info.value) == (
        "overrides[0].extra: unknown key; expected one of team, stages, when, description",
        "overrides[0].team: expected a team name (got 5 that is a int)",
        "overrides[0].description: expected a string (got 3 that is a int)",
        "overrides[0].when: expected a list of conditions (got 'x' that is a str)",
        "overrides[1].when[0].oops: unknown key; expected one of attribute, op, values",
        "overrides[2].team: expected a team name (got '' that is a str)",
    )


def test_a_document_read_for_a_funnel_takes_its_owners_and_is_validated() -> None:
    rules = OwnerRules.from_dict({"defaults": {"b": "marketing"}}, funnel=FUNNEL)
    assert dict(rules.defaults) == {"a": "marketing", "b": "marketing", "won": "sales"}
    with pytest.raises(InvalidOwnerRules) as info:
        OwnerRules.from_dict({"defaults": {"zz": "sales"}}, funnel=FUNNEL)
    assert messages(info.value) == (
        "defaults: stage 'zz' is not in funnel 'tiny' (stages: a, b, won)",
    )


def test_the_solo_person_keeps_the_teams_listed_first() -> None:
    rules = OwnerRules.from_dict(
        {"teams": ["partners"], "solo": "ann", "members": {"ann": ["partners"]}}
    )
    assert dict(rules.members) == {"ann": ("partners", "marketing", "sales")}


def test_json_files_are_indented_utf8_text(tmp_path: Path) -> None:
    rules = OwnerRules.for_funnel(
        FUNNEL, overrides=(OwnerRule("sales", ("a",), (BIG,), "Zürich office"),)
    )
    path = tmp_path / "owners.json"
    save_owner_rules(rules, path)
    raw = path.read_bytes()
    assert "Zürich office".encode() in raw
    text = raw.decode("utf-8")
    assert text == json.dumps(rules.to_dict(), indent=2, ensure_ascii=False) + "\n"
    assert load_owner_rules(path, funnel=FUNNEL) == rules


def test_toml_strings_escape_control_characters_only(tmp_path: Path) -> None:
    rules = OwnerRules.for_funnel(
        FUNNEL, overrides=(OwnerRule("sales", ("a",), (BIG,), 'a b\x1f\x7f"\\é'),)
    )
    path = tmp_path / "owners.toml"
    save_owner_rules(rules, path)
    text = path.read_text(encoding="utf-8")
    assert 'description = "a b\\u001f\\u007f\\"\\\\é"' in text
    assert load_owner_rules(path, funnel=FUNNEL) == rules


@pytest.mark.parametrize("value", [2**63 - 1, -(2**63)])
def test_toml_takes_every_64_bit_integer(tmp_path: Path, value: int) -> None:
    rules = OwnerRules.for_funnel(
        FUNNEL, overrides=(OwnerRule("sales", ("a",), (Condition("n", (value,)),)),)
    )
    path = tmp_path / "owners.toml"
    save_owner_rules(rules, path)
    assert f"values = [\n    {value},\n]" in path.read_text(encoding="utf-8")
    assert load_owner_rules(path, funnel=FUNNEL) == rules


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1])
def test_toml_refuses_integers_beyond_64_bits(tmp_path: Path, value: int) -> None:
    rules = OwnerRules.for_funnel(
        FUNNEL, overrides=(OwnerRule("sales", ("a",), (Condition("n", (value,)),)),)
    )
    path = tmp_path / "owners.toml"
    with pytest.raises(InvalidOwnerRules) as info:
        save_owner_rules(rules, path)
    assert messages(info.value) == (
        f"{path}: overrides[0].when[0].values[0]: {value} does not fit TOML's 64-bit "
        "integers; save as .json",
    )
    assert not path.exists()


def test_a_rule_for_no_known_stage_does_not_stop_the_checks_of_later_rules() -> None:
    rules = OwnerRules(
        DEFAULTS,
        overrides=(
            OwnerRule("sales", ("zz",)),
            OwnerRule("sales", ("a",), (BIG,)),
            OwnerRule("marketing", ("a",), (Condition("employees", (5000,), "gte"),)),
        ),
    )
    assert [p.message for p in rules.problems(FUNNEL)] == [
        "overrides[0] (team 'sales' in zz): stage 'zz' is not in funnel 'tiny' (stages: a, b, won)",
        "overrides[2] (team 'marketing' in a when employees >= 5000) can never apply: "
        "overrides[1] comes first and already matches every lead it would match; "
        "move it earlier, narrow the earlier rule, or remove it",
    ]


def test_rules_that_differ_only_in_their_values_are_not_repeats() -> None:
    rules = OwnerRules(
        DEFAULTS,
        overrides=(
            OwnerRule("sales", ("a",), (Condition("segment", ("enterprise",)),)),
            OwnerRule("sales", ("a",), (Condition("segment", ("mid",)),)),
            OwnerRule("sales", ("a",), (Condition("employees", (10,)),)),
            OwnerRule("sales", ("a",), (Condition("employees", (20,)),)),
        ),
    )
    assert rules.problems(FUNNEL) == []


def test_numbers_match_only_equal_numbers() -> None:
    ten = Condition("employees", (10,))
    assert ten.matches({"employees": 10})
    assert ten.matches({"employees": 10.0})
    assert not ten.matches({"employees": 11})
    assert not ten.matches({"employees": True})
    assert Condition("employees", (10,), "not_in").matches({"employees": 11})


def test_malformed_rules_and_conditions_in_a_document_are_located() -> None:
    with pytest.raises(InvalidOwnerRules) as info:
        OwnerRules.from_dict(
            {
                "overrides": [
                    "sales",
                    {"team": "sales", "when": [{"attribute": "a", "values": "x"}]},
                ]
            }
        )
    assert messages(info.value) == (
        "overrides[0]: expected a table (a mapping) (got 'sales' that is a str)",
        "overrides[1].when[0].values: expected a list of values (got 'x' that is a str)",
    )


class _Seven:
    """An integer of a type other than int, as NumPy's integers are."""

    def __int__(self) -> int:
        return 7

    def __repr__(self) -> str:
        return "Seven()"


numbers.Integral.register(_Seven)


def test_integers_of_other_types_become_plain_ints() -> None:
    condition = Condition("n", (_Seven(),), "gte")  # type: ignore[arg-type]
    assert condition.values == (7,)
    assert type(condition.values[0]) is int
