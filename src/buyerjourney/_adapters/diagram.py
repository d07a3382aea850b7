"""Diagrams of a funnel: Mermaid and Graphviz DOT text, and SVG through Graphviz.

:func:`to_mermaid` and :func:`to_dot` need nothing beyond the standard
library; paste the Mermaid text into Markdown (GitHub, MkDocs Material render
it) or feed the DOT text to Graphviz. :func:`to_svg` renders the DOT text with
the ``pydot`` package (``pip install 'buyerjourney[diagrams]'``) and Graphviz's
``dot`` program.

Both texts show the same things:

* an arrow from the start into the initial stage, and from every terminal
  stage to the end;
* every transition, labelled with its event, its guard in brackets
  (``hand_off [is_enterprise]``), and ``(back)`` or ``(exit)`` for backward
  and exit moves (DOT also draws backward moves dashed and exits red);
* for every stage: its description, its kind when it is not an open stage,
  whether it is a gate, its owner (also as a fill colour per team) and its SLA.
"""

from __future__ import annotations

import json
import shutil
import textwrap
import warnings
from collections.abc import Iterator
from datetime import timedelta

from buyerjourney._core.funnel import Direction, Funnel, Stage, StageKind, Transition
from buyerjourney.errors import MissingExtra

__all__ = ["owner_colours", "to_dot", "to_mermaid", "to_svg"]

_KNOWN_OWNER_COLOURS = {"marketing": "#dbeafe", "sales": "#dcfce7"}
_MORE_COLOURS = ("#fef3c7", "#fce7f3", "#ede9fe", "#ccfbf1", "#ffedd5", "#e0e7ff")
_NO_OWNER_COLOUR = "#f3f4f6"
_EXIT_COLOUR = "#b91c1c"

# Words that Mermaid's state-diagram grammar reads as keywords, so they cannot
# be state ids; such stages get the id "_<name>" (stage names never start with _).
_MERMAID_KEYWORDS = frozenset(
    {"as", "class", "classdef", "click", "default", "direction", "end", "hide", "note"}
    | {"state", "style", "fork", "join", "choice", "left", "right", "of", "over"}
)

_MERMAID_ESCAPES = str.maketrans(
    {"#": "#35;", ";": "#59;", ":": "#58;", "<": "#60;", ">": "#62;", '"': "#34;"}
)


def owner_colours(funnel: Funnel) -> dict[str, str]:
    """The fill colour of each owning team of *funnel*, as ``#rrggbb``.

    ``marketing`` is light blue and ``sales`` light green; other teams get
    further colours in order of first appearance (repeating after six).
    """
    colours: dict[str, str] = {}
    extra = 0
    for stage in funnel.stages:
        owner = stage.owner
        if owner is None or owner in colours:
            continue
        if owner in _KNOWN_OWNER_COLOURS:
            colours[owner] = _KNOWN_OWNER_COLOURS[owner]
        else:
            colours[owner] = _MORE_COLOURS[extra % len(_MORE_COLOURS)]
            extra += 1
    return colours


def _duration(value: timedelta) -> str:
    days, rest = divmod(value, timedelta(days=1))
    hours, rest = divmod(rest, timedelta(hours=1))
    minutes, rest = divmod(rest, timedelta(minutes=1))
    seconds = rest.total_seconds()
    parts = [f"{n}{unit}" for n, unit in ((days, "d"), (hours, "h"), (minutes, "m")) if n]
    if seconds:
        parts.append(f"{seconds:g}s")
    return " ".join(parts) or "0s"


def _facts(stage: Stage) -> Iterator[str]:
    """The lines shown for a stage under its name, as plain text."""
    description = " ".join(stage.description.split())
    if description:
        yield description
    if stage.kind is not StageKind.OPEN:
        yield stage.kind.value.replace("_", " ")
    if stage.gate:
        yield "gate (accept or recycle)"
    if stage.owner is not None:
        yield f"owned by {stage.owner}"
    if stage.sla is not None:
        yield f"SLA {_duration(stage.sla)}"


def _edge_label(t: Transition) -> str:
    label = t.event
    if t.guard is not None:
        label += f" [{t.guard}]"
    if t.direction is Direction.BACKWARD:
        label += " (back)"
    elif t.direction is Direction.EXIT:
        label += " (exit)"
    return label


def _mermaid_text(text: str) -> str:
    return " ".join(text.split()).translate(_MERMAID_ESCAPES)


def to_mermaid(funnel: Funnel) -> str:
    """Return a Mermaid ``stateDiagram-v2`` of *funnel*.

    Stages owned by a team are coloured with a ``classDef`` per team
    (``owner_marketing``, ...); text is escaped with Mermaid entity codes.

    Example::

        print(to_mermaid(presets.seed()))
    """
    ids = {
        s.name: f"_{s.name}" if s.name.lower() in _MERMAID_KEYWORDS else s.name
        for s in funnel.stages
    }
    lines = [
        "---",
        f"title: {json.dumps(funnel.name, ensure_ascii=False)}",
        "---",
        "stateDiagram-v2",
        "    direction LR",
    ]
    for stage in funnel.stages:
        if ids[stage.name] != stage.name:
            lines.append(f'    state "{stage.name}" as {ids[stage.name]}')
    lines.append(f"    [*] --> {ids[funnel.initial.name]}")
    for stage in funnel.stages:
        lines.extend(f"    {ids[stage.name]} : {_mermaid_text(fact)}" for fact in _facts(stage))
    for t in funnel.transitions:
        lines.append(f"    {ids[t.source]} --> {ids[t.target]} : {_mermaid_text(_edge_label(t))}")
    lines.extend(f"    {ids[s.name]} --> [*]" for s in funnel.stages if s.terminal)
    colours = owner_colours(funnel)
    for owner, colour in colours.items():
        lines.append(f"    classDef owner_{owner} fill:{colour},stroke:#374151")
    for owner in colours:
        members = ",".join(ids[s.name] for s in funnel.stages if s.owner == owner)
        lines.append(f"    class {members} owner_{owner}")
    return "\n".join(lines) + "\n"


def _dot_string(text: str) -> str:
    """*text* as a quoted DOT string; newlines become centred line breaks."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n") + '"'


def _dot_label(stage: Stage) -> str:
    lines = [stage.name]
    for fact in _facts(stage):
        lines.extend(textwrap.wrap(fact, 32) or [""])
    return _dot_string("\n".join(lines))


def to_dot(funnel: Funnel) -> str:
    """Return a Graphviz DOT ``digraph`` of *funnel*.

    Stages are rounded boxes filled with their owner's colour (see
    :func:`owner_colours`), terminal stages have a double border; backward
    moves are dashed and exits red. Descriptions also appear as tooltips in
    rendered SVG.
    """
    colours = owner_colours(funnel)
    lines = [
        f"digraph {_dot_string(funnel.name)} {{",
        f"    graph [rankdir=LR, labelloc=t, label={_dot_string(funnel.name)}];",
        '    node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=11];',
        '    edge [fontname="Helvetica", fontsize=10];',
        '    "__start" [shape=point, width=0.15, label=""];',
    ]
    for stage in funnel.stages:
        attrs = [
            f"label={_dot_label(stage)}",
            f'fillcolor="{colours.get(stage.owner or "", _NO_OWNER_COLOUR)}"',
        ]
        if stage.terminal:
            attrs.append("peripheries=2")
        if stage.description:
            attrs.append(f"tooltip={_dot_string(stage.description)}")
        lines.append(f"    {_dot_string(stage.name)} [{', '.join(attrs)}];")
    if any(s.terminal for s in funnel.stages):
        lines.append(
            '    "__end" [shape=doublecircle, width=0.12, label="", style=filled, fillcolor=black];'
        )
    lines.append(f'    "__start" -> {_dot_string(funnel.initial.name)};')
    for t in funnel.transitions:
        attrs = [f"label={_dot_string(_edge_label(t))}"]
        if t.direction is Direction.BACKWARD:
            attrs.append("style=dashed")
        elif t.direction is Direction.EXIT:
            attrs.append(f'color="{_EXIT_COLOUR}", fontcolor="{_EXIT_COLOUR}"')
        if t.description:
            attrs.append(f"tooltip={_dot_string(t.description)}")
        lines.append(
            f"    {_dot_string(t.source)} -> {_dot_string(t.target)} [{', '.join(attrs)}];"
        )
    lines.extend(f'    {_dot_string(s.name)} -> "__end";' for s in funnel.stages if s.terminal)
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_svg(funnel: Funnel) -> str:
    """Render :func:`to_dot` of *funnel* as SVG text with pydot and Graphviz.

    Raises:
        MissingExtra: ``pydot`` is not installed (the ``diagrams`` extra), or
            Graphviz's ``dot`` program is not on ``PATH``.
    """
    try:
        import pydot  # noqa: PLC0415  (optional dependency, imported on use)
    except ImportError as exc:
        raise MissingExtra("SVG diagrams", "diagrams") from exc
    if shutil.which("dot") is None:
        raise MissingExtra(
            "SVG diagrams",
            "diagrams",
            "They also need Graphviz's `dot` program on PATH: install Graphviz "
            "(e.g. `apt-get install graphviz` or `brew install graphviz`).",
        )
    with warnings.catch_warnings():
        # pydot's DOT parser makes pyparsing warn about its own grammar (deprecated
        # names, result names); nothing a caller could act on, so keep them quiet.
        warnings.simplefilter("ignore")
        graphs = pydot.graph_from_dot_data(to_dot(funnel))
    if not graphs:  # pragma: no cover  (to_dot always produces one parseable graph)
        msg = f"pydot could not parse the DOT text of funnel {funnel.name!r}"
        raise RuntimeError(msg)
    svg = graphs[0].create(prog="dot", format="svg")
    return svg.decode("utf-8") if isinstance(svg, bytes) else str(svg)
