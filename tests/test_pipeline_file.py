"""Pipeline files: a Pipeline as data (funnel, owners, scorer, policy, thresholds)."""

from __future__ import annotations

import importlib.metadata
import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from buyerjourney import (
    PIPELINE_SCHEMA,
    AnyOf,
    AttributeRule,
    CombinedScorer,
    FitCriterion,
    FitGrader,
    FunnelFormatError,
    Hooks,
    InvalidFunnel,
    InvalidOwnerRules,
    LinearDecay,
    MatrixPolicy,
    PipelineFormatError,
    PointsRule,
    PointsScorer,
    ScoreGroup,
    ThresholdPolicy,
    TimeWindow,
    TouchKindPolicy,
    Transition,
    default_pipeline,
    default_policy,
    default_scorer,
    dump_funnel,
    load_pipeline,
    loads_pipeline,
    presets,
)
from buyerjourney._adapters.files import MAX_FILE_BYTES
from buyerjourney.policies import POLICY_GROUP
from buyerjourney.scoring import SCORER_GROUP

HEAD = f'format = "{PIPELINE_SCHEMA}"\n'
WATERFALL = presets.demand_waterfall()


def toml(body: str, **options: Any) -> Any:
    return loads_pipeline(HEAD + body, format="toml", **options)


def error_of(text: str, fmt: str = "toml", **options: Any) -> PipelineFormatError:
    with pytest.raises(PipelineFormatError) as info:
        loads_pipeline(text, format=fmt, **options)  # type: ignore[arg-type]
    return info.value


# ---------------------------------------------------------------- the defaults


def test_a_funnel_alone_gives_the_default_pipeline() -> None:
    pipeline = toml('funnel = "waterfall"\n')
    expected = default_pipeline(WATERFALL)
    assert pipeline.funnel == expected.funnel
    assert pipeline.owners == expected.owners
    assert pipeline.scorer == expected.scorer == default_scorer()
    assert pipeline.policy == expected.policy == default_policy(WATERFALL)
    assert pipeline.thresholds == expected.thresholds == (25, 60)
    assert pipeline.hooks.guards == {}


def test_json_reads_the_same() -> None:
    document = {"format": PIPELINE_SCHEMA, "funnel": "seed", "thresholds": [10, 20.5]}
    pipeline = loads_pipeline(json.dumps(document), format="json")
    assert pipeline.funnel == presets.seed()
    assert pipeline.thresholds == (10, 20.5)


def test_none_turns_the_scorer_and_the_policy_off() -> None:
    pipeline = toml('funnel = "seed"\nscorer = {type = "none"}\npolicy = {type = "none"}\n')
    assert pipeline.scorer is None
    assert pipeline.policy is None
    assert pipeline.thresholds == ()


def test_default_types_name_the_default_parts() -> None:
    pipeline = toml(
        'funnel = "waterfall"\nscorer = {type = "default"}\npolicy = {type = "default"}\n'
    )
    assert pipeline.scorer == default_scorer()
    assert pipeline.policy == default_policy(WATERFALL)


# ---------------------------------------------------------------- every part

FULL = """
funnel = "waterfall"
description = "Engagement points, then a fit matrix for the handoff."
thresholds = [25]

[owners]
teams = ["partners"]
[owners.defaults]
won = "partners"

[[owners.overrides]]
team = "partners"
stages = ["mql"]
when = [{ attribute = "channel", values = ["partner"] }]

[scorer]
type = "combined"

[scorer.engagement]
type = "points"
total_cap = 100

[[scorer.engagement.rules]]
name = "page_view"
points = 1
kind = "page_view"
group = "web"

[[scorer.engagement.rules]]
name = "spring_demo"
points = 40
kind = "demo_request"
where = { campaign = "spring" }
repeatable = false

[[scorer.engagement.groups]]
name = "web"
cap = 20
decay = { fraction = 0.5, every = "P30D" }

[[scorer.engagement.groups]]
name = "engagement"
window = "P7D"

[[scorer.engagement.attribute_rules]]
name = "enterprise"
attribute = "segment"
values = ["enterprise"]
points = 10

[scorer.fit]
type = "fit"
criteria = [
  { name = "big", attribute = "employees_band", values = ["1000+"], steps = 3 },
  { name = "student", attribute = "title", values = ["student"], steps = -2 },
]

[policy]
type = "any"

[[policy.policies]]
type = "threshold"
threshold = 25
event = "qualify"
stages = "allowing"
reason = "engaged"

[[policy.policies]]
type = "all"

[[policy.policies.policies]]
type = "matrix"
event = "hand_off"
accept = ["A1", "B1"]
engagement_bands = [60, 40, 20]
stages = ["mql"]

[[policy.policies.policies]]
type = "touch_kind"
mapping = { demo_request = "hand_off" }

[[policy.policies]]
type = "touch_kind"
mapping = "events"
stages = "any"
"""


def test_every_part_of_the_schema() -> None:
    pipeline = toml(FULL)
    assert pipeline.owners.owner("won") == "partners"
    assert pipeline.owners.owner("mql", {"channel": "partner"}) == "partners"
    engagement = PointsScorer(
        [
            PointsRule("page_view", 1, kind="page_view", group="web"),
            PointsRule(
                "spring_demo",
                40,
                kind="demo_request",
                where={"campaign": "spring"},
                repeatable=False,
            ),
        ],
        groups=[
            ScoreGroup("web", cap=20, decay=LinearDecay(0.5, timedelta(days=30))),
            ScoreGroup("engagement", decay=TimeWindow(timedelta(days=7))),
        ],
        total_cap=100,
        attribute_rules=[AttributeRule("enterprise", "segment", ("enterprise",), 10)],
    )
    fit = FitGrader(
        [
            FitCriterion("big", "employees_band", ("1000+",), 3),
            FitCriterion("student", "title", ("student",), -2),
        ]
    )
    assert pipeline.scorer == CombinedScorer(engagement, fit)
    assert isinstance(pipeline.policy, AnyOf)
    threshold, both, by_kind = pipeline.policy.policies
    assert threshold == ThresholdPolicy(25, "qualify", stages=("inquiry",), reason="engaged")
    assert both.policies == (  # type: ignore[attr-defined]
        MatrixPolicy(
            "hand_off", accept={"A1", "B1"}, engagement_bands=(60, 40, 20), stages=("mql",)
        ),
        TouchKindPolicy({"demo_request": "hand_off"}),
    )
    assert by_kind == TouchKindPolicy({e: e for e in WATERFALL.events})
    assert pipeline.thresholds == (25,)


def test_thresholds_default_to_those_of_the_threshold_policies() -> None:
    body = FULL.replace("thresholds = [25]\n", "")
    assert toml(body).thresholds == (25,)


def test_the_pipeline_runs(tmp_path: Path) -> None:
    engine = toml(FULL).engine()
    from buyerjourney import Touch, parse_time  # noqa: PLC0415

    at = parse_time("2024-03-04T09:00:00+00:00")
    engine.ingest_one(Touch("t1", "acme", at, "qualify"))
    assert engine.journey("acme").stage == "mql"


# ---------------------------------------------------------------- funnels and owners by path


def test_paths_start_at_the_pipeline_file(tmp_path: Path) -> None:
    (tmp_path / "defs").mkdir()
    dump_funnel(WATERFALL, tmp_path / "defs" / "funnel.toml")
    (tmp_path / "defs" / "owners.json").write_text('{"defaults": {"won": "marketing"}}')
    path = tmp_path / "defs" / "pipeline.toml"
    path.write_text(HEAD + 'funnel = "funnel.toml"\nowners = "owners.json"\n')
    pipeline = load_pipeline(path)
    assert pipeline.funnel == WATERFALL
    assert pipeline.owners.owner("won") == "marketing"
    # loads_pipeline starts at the directory given (or the current one).
    text = path.read_text()
    again = loads_pipeline(text, format="toml", directory=tmp_path / "defs")
    assert (again.funnel, again.owners) == (pipeline.funnel, pipeline.owners)


def test_an_inline_funnel(tmp_path: Path) -> None:
    from buyerjourney import dumps_funnel  # noqa: PLC0415

    funnel_toml = dumps_funnel(presets.seed(), format="toml")
    inline = "\n".join(
        line.replace("[[stages]]", "[[funnel.stages]]").replace(
            "[[transitions]]", "[[funnel.transitions]]"
        )
        for line in funnel_toml.splitlines()
        if not line.startswith("format")
    )
    top, _, tables = inline.partition("\n\n")
    pipeline = toml("[funnel]\n" + top + "\n\n" + tables + "\n")
    assert pipeline.funnel == presets.seed()


def test_an_inline_funnel_reports_its_problems_with_their_place() -> None:
    error = error_of(HEAD + '[funnel]\nname = "x"\n[[funnel.stages]]\nname = "a"\nrank = "ten"\n')
    assert error.location == "funnel.stages[0].rank"


def test_an_inline_funnel_that_does_not_hold_together() -> None:
    with pytest.raises(InvalidFunnel):
        toml('[funnel]\nname = "x"\n[[funnel.stages]]\nname = "a"\nrank = 1\n')


def test_a_missing_funnel_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.toml"
    path.write_text(HEAD + 'funnel = "nowhere.toml"\n')
    with pytest.raises(PipelineFormatError) as info:
        load_pipeline(path)
    assert info.value.location == "funnel"
    assert "cannot read the funnel file" in str(info.value)
    assert "nowhere.toml" in str(info.value)


def test_a_malformed_funnel_file_raises_its_own_error(tmp_path: Path) -> None:
    (tmp_path / "f.toml").write_text('format = "buyerjourney.funnel/1"\nname = 3\n')
    with pytest.raises(FunnelFormatError) as info:
        toml('funnel = "f.toml"\n', directory=tmp_path)
    assert not isinstance(info.value, PipelineFormatError)
    assert "f.toml" in str(info.value)


def test_owner_rules_with_problems_are_refused_unless_unchecked() -> None:
    body = 'funnel = "waterfall"\n[owners.defaults]\nwon = "nobody"\n'
    with pytest.raises(InvalidOwnerRules) as info:
        toml(body)
    assert [p.code for p in info.value.problems] == ["unknown-team"]
    assert "<string>: owners: " in str(info.value)
    rules = toml(body, check_owners=False).owners
    assert [p.code for p in rules.problems(WATERFALL)] == ["unknown-team"]


def test_a_missing_owner_file_is_named(tmp_path: Path) -> None:
    error = error_of(HEAD + 'funnel = "seed"\nowners = "owners.toml"\n', directory=tmp_path)
    assert error.location == "owners"
    assert "cannot read the owner rules file" in str(error)


def test_hooks_are_given_not_named() -> None:
    funnel = WATERFALL.extend(
        add_transitions=[Transition("fast_track", "inquiry", "sal", guard="vip")]
    )
    hooks = Hooks({"vip": lambda ctx: True})
    document = {"format": PIPELINE_SCHEMA, "funnel": json.loads(_funnel_json(funnel))}
    pipeline = loads_pipeline(json.dumps(document), format="json", hooks=hooks)
    assert pipeline.hooks is hooks
    assert pipeline.engine() is not None  # every guard is registered


def _funnel_json(funnel: Any) -> str:
    from buyerjourney import dumps_funnel  # noqa: PLC0415

    return dumps_funnel(funnel, format="json")


# ---------------------------------------------------------------- plugins


@pytest.fixture
def plugins(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.syspath_prepend(str(Path(__file__).parent))

    def install(*entries: tuple[str, str, str]) -> None:
        eps = [importlib.metadata.EntryPoint(name=n, value=v, group=g) for n, v, g in entries]

        def fake(*, group: str) -> list[importlib.metadata.EntryPoint]:
            return [ep for ep in eps if ep.group == group]

        monkeypatch.setattr(importlib.metadata, "entry_points", fake)

    return install


def test_plugins_by_entry_point_name(plugins: Any) -> None:
    plugins(
        ("counter", "plugin_fixture:TouchCounter", SCORER_GROUP),
        ("demo", "plugin_fixture:DemoPolicy", POLICY_GROUP),
    )
    pipeline = toml(
        'funnel = "waterfall"\n'
        'scorer = { type = "plugin", name = "counter" }\n'
        'policy = { type = "plugin", name = "demo" }\n'
    )
    assert type(pipeline.scorer).__name__ == "TouchCounter"
    assert type(pipeline.policy).__name__ == "DemoPolicy"
    assert pipeline.thresholds == ()


def test_an_unknown_plugin_is_a_located_problem(plugins: Any) -> None:
    plugins()
    error = error_of(HEAD + 'funnel = "seed"\nscorer = { type = "plugin", name = "nope" }\n')
    assert error.location == "scorer.name"
    assert "no scorer registered under 'nope'" in str(error)


# ---------------------------------------------------------------- problems


def test_every_problem_is_listed_with_its_place() -> None:
    error = error_of(
        HEAD
        + """
funnel = "watrfall"
colour = "blue"
thresholds = [1, "2"]

[scorer]
type = "points"
total_cap = -1
rules = [{ name = "a", points = inf }, { points = 2 }]
groups = [{ name = "web", decay = { fraction = 0.5 }, window = "P1D" }]

[policy]
type = "any"
policies = [{ type = "threshold", threshold = "x", stages = [] }, { type = "matrx" }]
"""
    )
    message = str(error)
    for location in (
        "colour: unknown key",
        "funnel: must be a preset name",
        'did you mean "waterfall"?',
        "thresholds[1]: must be a finite number",
        "scorer.rules[0].points: must be a finite number",
        "scorer.total_cap: must be a finite number, zero or more",
        "scorer.rules[1].name: missing",
        "scorer.groups[0]: has both 'decay' and 'window'",
        "policy.policies[0].event: missing",
        "policy.policies[0].threshold: must be a finite number",
        "policy.policies[0].stages: must be an array of stage names",
        'policy.policies[1].type: must be one of "threshold"',
        'did you mean "matrix"?',
    ):
        assert location in message, location
    assert message.startswith("<string>: 11 problems in the pipeline document:")


def test_events_and_stages_the_funnel_lacks() -> None:
    error = error_of(
        HEAD
        + """
funnel = "waterfall"
[policy]
type = "any"
policies = [
  { type = "threshold", threshold = 25, event = "qualifi", stages = ["inquiry"] },
  { type = "touch_kind", mapping = { demo = "hand_of" }, stages = ["mqll"] },
]
"""
    )
    message = str(error)
    assert "policy.policies[0].event: funnel 'waterfall' has no event \"qualifi\"" in message
    assert 'did you mean "qualify"?' in message
    assert "policy.policies[1].mapping.demo: funnel 'waterfall' has no event" in message
    assert "policy.policies[1].stages: funnel 'waterfall' has no stage \"mqll\"" in message


def test_a_scorer_the_constructor_refuses_is_located() -> None:
    error = error_of(
        HEAD
        + 'funnel = "seed"\n[scorer]\ntype = "points"\n'
        + 'rules = [{ name = "a", points = 1, group = "web" }]\n'
        + 'groups = [{ name = "email" }]\n'
    )
    assert error.location == "scorer"
    assert "'web'" in str(error)


def test_the_format_key_is_required_and_versioned() -> None:
    assert error_of('funnel = "seed"\n').location == "format"
    error = error_of('format = "buyerjourney.pipeline/9"\nfunnel = 1\n')
    assert "unsupported format version" in str(error)
    assert error_of('format = "buyerjourney.funnel/1"\nfunnel = "seed"\n').location == "format"


def test_a_pipeline_error_is_a_funnel_format_error() -> None:
    assert issubclass(PipelineFormatError, FunnelFormatError)


def test_the_suffix_gives_the_format(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text(HEAD)
    with pytest.raises(PipelineFormatError, match=r"name the file with \.toml or \.json"):
        load_pipeline(path)


# ---------------------------------------------------------------- documents that used to crash

DEEP_TOML = HEAD + "funnel = " + "[" * 50_000 + "]" * 50_000 + "\n"
DEEP_JSON = f'{{"format": "{PIPELINE_SCHEMA}", "funnel": {"[" * 50_000 + "]" * 50_000}}}'
HUGE_TOML = HEAD + 'funnel = "seed"\nthresholds = [' + "9" * 5000 + "]\n"
HUGE_JSON = f'{{"format": "{PIPELINE_SCHEMA}", "funnel": "seed", "thresholds": [{"9" * 5000}]}}'
LONG_WINDOW = (
    HEAD
    + 'funnel = "seed"\n[scorer]\ntype = "points"\n'
    + 'groups = [{ name = "engagement", window = "P'
    + "9" * 5000
    + 'D" }]\n'
)


@pytest.mark.parametrize(
    ("text", "fmt", "expected"),
    [
        (DEEP_TOML, "toml", "nested more than 32 levels"),
        (DEEP_JSON, "json", "nested more than 32 levels"),
        (HUGE_TOML, "toml", "an integer has more than 4300 digits"),
        (HUGE_JSON, "json", "an integer has more than 4300 digits"),
        (LONG_WINDOW, "toml", "scorer.groups[0].window: is too long to be a duration"),
    ],
    ids=["deep-toml", "deep-json", "huge-int-toml", "huge-int-json", "long-duration"],
)
def test_hostile_documents_are_format_errors(text: str, fmt: str, expected: str) -> None:
    assert expected in str(error_of(text, fmt))


def test_a_byte_order_mark_is_dropped(tmp_path: Path) -> None:
    text = "\ufeff" + HEAD + 'funnel = "seed"\n'
    assert loads_pipeline(text, format="toml").funnel == presets.seed()
    path = tmp_path / "pipeline.toml"
    path.write_bytes(text.encode("utf-8"))
    assert load_pipeline(path).funnel == presets.seed()


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_an_endless_file_is_refused_at_the_bound(tmp_path: Path) -> None:
    link = tmp_path / "zero.toml"
    link.symlink_to("/dev/zero")
    with pytest.raises(PipelineFormatError) as info:
        load_pipeline(link)
    assert f"larger than 4 MiB ({MAX_FILE_BYTES} bytes)" in str(info.value)


def test_the_how_to_shows_the_pipeline_file_its_code_loads() -> None:
    guide = (Path(__file__).parents[1] / "docs" / "howto" / "file-format.md").read_text(
        encoding="utf-8"
    )
    blocks = guide.split("```toml\n")[1:]
    (shown,) = [b.split("```", 1)[0] for b in blocks if PIPELINE_SCHEMA in b.split("```", 1)[0]]
    assert any(f"{q}\\\n{shown}{q}" in guide for q in ('"""', "'''"))
