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
from collections.abc import Callable, Collection, Iterable
from typing import Protocol, TypeVar

__all__ = ["Move", "reach", "shortest_paths"]


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
) -> dict[str, tuple[_M, ...]]:
    """A shortest path from *start* to every stage it reaches, breadth first.

    Ties go to the move found first: stages in the order they are reached,
    and the moves out of each in the order *moves* gives them. *moves* is
    called once for each stage reached (never for a stage in *avoid*), and
    every move it gives is looked at, even one into a stage already reached.

    Args:
        moves: The moves out of a stage, such as ``funnel.transitions_from``.
        start: Where every path starts; its own path is empty.
        avoid: Stages the paths never enter.
        usable: If given, only the moves for which it is true are taken.

    Returns:
        Each reached stage (*start* included) with the moves that lead there
        from *start*, in the order reached.
    """
    paths: dict[str, tuple[_M, ...]] = {start: ()}
    queue = deque([start])
    while queue:
        stage = queue.popleft()
        for move in moves(stage):
            target = move.target
            if target in paths or target in avoid:
                continue
            if usable is not None and not usable(move):
                continue
            paths[target] = (*paths[stage], move)
            queue.append(target)
    return paths


def reach(
    moves: Callable[[str], Iterable[_M]],
    start: str,
    *,
    avoid: Collection[str] = (),
    usable: Callable[[_M], bool] | None = None,
) -> set[str]:
    """The stages reachable from *start*, itself included.

    Args:
        moves: The moves out of a stage, such as ``funnel.transitions_from``.
        start: Where the walk starts.
        avoid: Stages the walk never enters.
        usable: If given, only the moves for which it is true are taken.

    Returns:
        The names of the stages reached.
    """
    return set(shortest_paths(moves, start, avoid=avoid, usable=usable))
