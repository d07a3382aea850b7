"""Diagrams: exact Mermaid text, DOT content and escaping, SVG through pydot and Graphviz."""

from __future__ import annotations

import re
import shutil
import sys
import warnings
from datetime import timedelta

import pytest
from hypothesis import given, settings

from buyerjourney import Funnel, MissingExtra, Stage, StageKind, Transition, presets
from buyerjourney._adapters import diagram as diagram_module
from buyerjourney._adapters.diagram import owner_colours, to_dot, to_mermaid, to_svg
from buyerjourney.testing import funnels
from sample_funnels import BACK, EXIT


def small_funnel() -> Funnel:
    return Funnel(
        "Tiny demo",
        [
            Stage(
                "lead",
                10,
                owner="marketing",
                initial=True,
                description='Form fill: "hot" #1; <b>x</b>\nsecond line',
            ),
            Stage("sql", 20, owner="sales", gate=True, sla=timedelta(hours=72, minutes=30)),
            Stage("end", 30, StageKind.WON, owner="sales", terminal=True),
            Stage("lost", 0, StageKind.LOST),
        ],
        [
            Transition("hand_off", "lead", "sql", guard="is_hot"),
            Transition("recycle", "sql", "lead", BACK, description='Sales said "no"'),
            Transition("win", "sql", "end"),
            Transition("lose", "lead", "lost", EXIT),
        ],
    )


EXPECTED_MERMAID = """\
---
title: "Tiny demo"
---
stateDiagram-v2
    direction LR
    state "end" as _end
    [*] --> lead
    lead : Form fill#58; #34;hot#34; #35;1#59; #60;b#62;x#60;/b#62; second line
    lead : owned by marketing
    sql : gate (accept or recycle)
    sql : owned by sales
    sql : SLA 3d 30m
    _end : won
    _end : owned by sales
    lost : lost
    lead --> sql : hand_off [is_hot]
    sql --> lead : recycle (back)
    sql --> _end : win
    lead --> lost : lose (exit)
    _end --> [*]
    lost --> [*]
    classDef owner_marketing fill:#dbeafe,stroke:#374151
    classDef owner_sales fill:#dcfce7,stroke:#374151
    class lead owner_marketing
    class sql,_end owner_sales
"""


def test_mermaid_exact() -> None:
    assert to_mermaid(small_funnel()) == EXPECTED_MERMAID


def test_mermaid_of_a_preset() -> None:
    text = to_mermaid(presets.demand_waterfall())
    lines = text.splitlines()
    assert "    [*] --> inquiry" in lines
    assert "    sal --> inquiry : recycle (back)" in lines
    assert "    sql --> disqualified : disqualify (exit)" in lines
    assert "    sal : SLA 3d" in lines
    assert "    sal : gate (accept or recycle)" in lines
    assert "    won --> [*]" in lines
    assert "    class inquiry,mql owner_marketing" in lines


def test_dot_content() -> None:
    text = to_dot(small_funnel())
    assert text.startswith('digraph "Tiny demo" {\n')
    assert text.endswith("}\n")
    assert '    "__start" -> "lead";' in text
    assert (
        '"sql" -> "lead" [label="recycle (back)", style=dashed, tooltip="Sales said \\"no\\""];'
        in (text)
    )
    assert '"lead" -> "lost" [label="lose (exit)", color="#b91c1c", fontcolor="#b91c1c"];' in text
    assert '"lead" -> "sql" [label="hand_off [is_hot]"];' in text
    assert (
        '"sql" [label="sql\\ngate (accept or recycle)\\nowned by sales\\nSLA 3d 30m", '
        'fillcolor="#dcfce7"];'
    ) in text
    assert '"end" [label="end\\nwon\\nowned by sales", fillcolor="#dcfce7", peripheries=2];' in (
        text
    )
    assert '"lost" [label="lost\\nlost", fillcolor="#f3f4f6", peripheries=2];' in text
    assert '    "end" -> "__end";' in text
    assert 'tooltip="Form fill: \\"hot\\" #1; <b>x</b>\\nsecond line"' in text


def test_dot_escapes_backslashes_and_quotes() -> None:
    funnel = Funnel(
        'say "hi" \\o/',
        [Stage("a", 1, initial=True, description="C:\\temp\r\nnext"), Stage("b", 2, terminal=True)],
        [Transition("go", "a", "b")],
    )
    text = to_dot(funnel)
    assert text.startswith('digraph "say \\"hi\\" \\\\o/" {')
    assert 'tooltip="C:\\\\temp\\nnext"' in text


@pytest.mark.parametrize(
    ("sla", "shown"),
    [
        (timedelta(hours=72), "SLA 3d"),
        (timedelta(minutes=90), "SLA 1h 30m"),
        (timedelta(seconds=1.5), "SLA 1.5s"),
        (timedelta(days=2, seconds=5), "SLA 2d 5s"),
    ],
)
def test_sla_durations(sla: timedelta, shown: str) -> None:
    funnel = Funnel(
        "f",
        [Stage("a", 1, initial=True, sla=sla), Stage("b", 2, terminal=True)],
        [Transition("go", "a", "b")],
    )
    assert f"    a : {shown}" in to_mermaid(funnel).splitlines()
    assert f"\\n{shown}" in to_dot(funnel)


def test_owner_colours() -> None:
    funnel = Funnel(
        "f",
        [
            Stage("a", 1, owner="partners", initial=True),
            Stage("b", 2, owner="sales"),
            Stage("c", 3, owner="success", terminal=True),
            Stage("d", 4, owner="marketing", terminal=True),
        ],
        [Transition("go", "a", "b"), Transition("on", "b", "c"), Transition("up", "b", "d")],
    )
    colours = owner_colours(funnel)
    assert list(colours) == ["partners", "sales", "success", "marketing"]
    assert colours["marketing"] == "#dbeafe"
    assert colours["sales"] == "#dcfce7"
    assert len(set(colours.values())) == 4
    assert f'fillcolor="{colours["partners"]}"' in to_dot(funnel)


@settings(max_examples=100, deadline=None)
@given(funnels(min_stages=1))
def test_every_transition_and_stage_is_drawn(funnel: Funnel) -> None:
    mermaid = to_mermaid(funnel).splitlines()
    arrows = [line.split()[:3] for line in mermaid if line.split()[1:2] == ["-->"]]
    terminals = sum(s.terminal for s in funnel.stages)
    assert len(arrows) == len(funnel.transitions) + 1 + terminals
    assert sum(arrow[2] == "[*]" for arrow in arrows) == terminals
    assert all(line.startswith("    ") for line in mermaid[4:])
    dot_arrows = [line for line in to_dot(funnel).splitlines() if re.match(r'    "\w+" -> ', line)]
    assert len(dot_arrows) == dot_edges(funnel)


# ---------------------------------------------------------------- SVG


@settings(max_examples=25, deadline=None)
@given(funnels(min_stages=1))
def test_dot_parses_with_pydot(funnel: Funnel) -> None:
    pydot = pytest.importorskip("pydot")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydot's parser trips pyparsing's own warnings
        graphs = pydot.graph_from_dot_data(to_dot(funnel))
    assert graphs is not None
    assert len(graphs) == 1
    node_names = {n.get_name().strip('"') for n in graphs[0].get_nodes()} - {
        "node",
        "edge",
        "graph",
    }
    assert node_names == {*funnel.stage_names, "__start"} | (
        {"__end"} if any(s.terminal for s in funnel.stages) else set()
    )
    assert len(graphs[0].get_edges()) == dot_edges(funnel)


def dot_edges(funnel: Funnel) -> int:
    return len(funnel.transitions) + 1 + sum(s.terminal for s in funnel.stages)


def test_svg() -> None:
    pytest.importorskip("pydot")
    if shutil.which("dot") is None:
        pytest.skip("Graphviz's dot program is not installed")
    svg = to_svg(small_funnel())
    assert svg.lstrip().startswith("<?xml") or svg.lstrip().startswith("<svg")
    assert "<svg" in svg
    for name in ("lead", "sql", "hand_off [is_hot]", "recycle (back)"):
        assert name in svg
    assert "#dbeafe" in svg


def test_svg_without_pydot(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pydot", None)
    with pytest.raises(MissingExtra) as info:
        to_svg(small_funnel())
    assert info.value.extra == "diagrams"
    assert "pip install 'buyerjourney[diagrams]'" in str(info.value)


def test_svg_without_graphviz(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("pydot")
    monkeypatch.setattr(diagram_module.shutil, "which", lambda name: None)
    with pytest.raises(MissingExtra) as info:
        to_svg(small_funnel())
    assert info.value.extra == "diagrams"
    assert "Graphviz" in str(info.value)
    assert "apt-get install graphviz" in str(info.value)
