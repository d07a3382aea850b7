"""Breadth-first walks over a funnel's transitions: the one home of reach and shortest paths.

Funnel validation (:func:`~buyerjourney.find_problems`: stages unreachable
from the initial stage) and the verifier (gates a lead can bypass, loops with
no way out, the example path of each finding) ask the same two questions of
the same graph, so they share these functions.

A walk is given its moves as a function from a stage name to the transitions
out of it (``funnel.transitions_from`` for a built funnel). Only a
transition's ``target`` is read, so any object with a ``target`` will do;
the function may also decide on the fly which moves are possible (the
verifier asks guards there) or note each move it sees.

Example::

    from buyerjourney import presets
    from buyerjourney._core.graph import reach, shortest_paths

    funnel = presets.seed()
    paths = shortest_paths(funnel.transitions_from, funnel.initial.name)
    [t.event for t in paths["retention"]]  # ['engage', 'convert', 'retain']
    "awareness" in reach(funnel.transitions_from, "retention")  # False
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol, TypeVar

if TYPE_CHECKING:
    from buyerjourney._core.funnel import Funnel, Transition

__all__ = [
    "Move",
    "PathTree",
    "backward_reach",
    "components",
    "reach",
    "shortest_paths",
]


class Move(Protocol):
    """What a walk needs of a transition: the stage it leads to."""

    @property
    def target(self) -> str:
        """The stage the move leads to."""
        ...


_M = TypeVar("_M", bound=Move)


def shortest_paths(
    moves: Callable[[str], Iterable[_M]],
    start: str,
    *,
    avoid: Collection[str] = (),
    usable: Callable[[_M], bool] | None = None,
) -> PathTree[_M]:
    """A shortest path from *start* to every stage it reaches, breadth first.

    Ties go to the move found first: stages in the order they are reached,
    and the moves out of each in the order *moves* gives them. *moves* is
    called once for each stage reached (never for a stage in *avoid*), and
    every move it gives is looked at, even one into a stage already reached.

    The walk is linear in the stages and moves it sees: each stage keeps the
    move that reached it, and a path is rebuilt (in its length) only when it
    is looked up.

    Args:
        moves: The moves out of a stage, such as ``funnel.transitions_from``.
        start: Where every path starts; its own path is empty.
        avoid: Stages the paths never enter.
        usable: If given, only the moves for which it is true are taken.

    Returns:
        A mapping of each reached stage (*start* included), in the order
        reached, to the moves that lead there from *start*.
    """
    return PathTree(moves, start, avoid=avoid, usable=usable)


def reach(
    moves: Callable[[str], Iterable[_M]],
    start: str,
    *,
    avoid: Collection[str] = (),
    usable: Callable[[_M], bool] | None = None,
) -> set[str]:
    """The stages reachable from *start*, itself included (one walk, no paths kept).

    *moves* is called once for each stage reached, as in :func:`shortest_paths`.

    Args:
        moves: The moves out of a stage, such as ``funnel.transitions_from``.
        start: Where the walk starts.
        avoid: Stages the walk never enters.
        usable: If given, only the moves for which it is true are taken.

    Returns:
        The names of the stages reached.
    """
    seen = {start}
    queue = deque([start])
    while queue:
        for move in moves(queue.popleft()):
            target = move.target
            if target in seen or target in avoid:
                continue
            if usable is not None and not usable(move):
                continue
            seen.add(target)
            queue.append(target)
    return seen


class PathTree(Mapping[str, tuple[_M, ...]]):
    """Shortest paths from one stage, kept as a breadth-first tree: linear in the funnel.

    Each reached stage keeps the stage it was reached from, the move that
    reached it and its depth; :meth:`path` (or ``tree[stage]``) rebuilds a
    path when asked, in the path's length. Giving every stage its whole path
    as a tuple instead would cost *n*\u00b2/2 on a chain of *n* stages. Ties go
    to the move found first (see :func:`shortest_paths`). As a mapping, it
    maps each reached stage, in the order reached, to its path.

    Args:
        moves: The moves out of a stage, such as ``funnel.transitions_from``;
            called once per stage reached (within *limit*).
        start: Where every path starts.
        avoid: Stages the paths never enter.
        usable: If given, only the moves for which it is true are taken.
        also: More stages to start from, after *start*: each stage's path
            then starts at the nearest of them (ties to the first given).
        limit: If given, the longest path kept: the walk stops there, so
            that it costs only what lies within *limit* moves.

    Attributes:
        start: Where every path starts (the first start, with *also*).
        last: The move that reaches each stage (``None`` for a start).
        parent: The stage each stage is reached from (``None`` for a start).
        depth: The number of moves from its start to each stage.
    """

    def __init__(
        self,
        moves: Callable[[str], Iterable[_M]],
        start: str,
        *,
        avoid: Collection[str] = (),
        usable: Callable[[_M], bool] | None = None,
        also: Iterable[str] = (),
        limit: int | None = None,
    ) -> None:
        self.start = start
        self.last: dict[str, _M | None] = {start: None}
        self.parent: dict[str, str | None] = {start: None}
        self.depth: dict[str, int] = {start: 0}
        for other in also:
            if other not in self.last and other not in avoid:
                self.last[other] = self.parent[other] = None
                self.depth[other] = 0
        queue = deque(self.last)
        while queue:
            stage = queue.popleft()
            if limit is not None and self.depth[stage] >= limit:
                continue
            for move in moves(stage):
                target = move.target
                if target in self.last or target in avoid:
                    continue
                if usable is not None and not usable(move):
                    continue
                self.last[target] = move
                self.parent[target] = stage
                self.depth[target] = self.depth[stage] + 1
                queue.append(target)

    def __contains__(self, stage: object) -> bool:
        return stage in self.last

    def __iter__(self) -> Iterator[str]:
        return iter(self.last)

    def __len__(self) -> int:
        return len(self.last)

    def __getitem__(self, stage: str) -> tuple[_M, ...]:
        if stage not in self.last:
            raise KeyError(stage)
        return self.path(stage)

    def __repr__(self) -> str:
        return f"PathTree(start={self.start!r}, stages={len(self.last)})"

    def path(self, stage: str) -> tuple[_M, ...]:
        """The moves from the start to *stage* (empty for the start or a stage not reached).

        Args:
            stage: The stage to reach.

        Returns:
            The moves, in order; built in the length of the path.
        """
        steps: list[_M] = []
        here: str | None = stage if stage in self.last else None
        while here is not None:
            move = self.last[here]
            if move is None:
                break
            steps.append(move)
            here = self.parent[here]
        return tuple(reversed(steps))

    def origin(self, stage: str) -> str | None:
        """The start the path to *stage* begins at (``None`` for a stage not reached).

        Args:
            stage: A reached stage.
        """
        here = stage if stage in self.last else None
        while here is not None:
            parent = self.parent[here]
            if parent is None:
                return here
            here = parent
        return None


def backward_reach(funnel: Funnel, targets: Iterable[str]) -> set[str]:
    """The stages from which one of *targets* can be reached (them included), in one walk."""
    incoming: dict[str, list[str]] = {}
    for t in funnel.transitions:
        incoming.setdefault(t.target, []).append(t.source)
    seen = set(targets)
    queue = deque(seen)
    while queue:
        for source in incoming.get(queue.popleft(), ()):
            if source not in seen:
                seen.add(source)
                queue.append(source)
    return seen


def components(funnel: Funnel, stages: Sequence[str]) -> dict[str, int]:
    """The strongly connected component of each of *stages* (Tarjan's, iteratively).

    Moves to stages not in *stages* are ignored.
    """
    among = set(stages)
    idents = 0
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    component: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    counter = 0
    for root in stages:
        if root in index:
            continue
        work: list[tuple[str, Iterator[Transition]]] = []
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        work.append((root, iter(funnel.transitions_from(root))))
        while work:
            node, moves = work[-1]
            advanced = False
            for move in moves:
                target = move.target
                if target not in among:
                    continue
                if target not in index:
                    index[target] = low[target] = counter
                    counter += 1
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(funnel.transitions_from(target))))
                    advanced = True
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component[member] = idents
                    if member == node:
                        break
                idents += 1
    return component
