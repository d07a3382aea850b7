"""The hand-written yardsticks: ``default_pipeline(presets.seed())`` replayed in plain Python.

Two loops, as one would write them for this one pipeline without the
library. Both compute the same numbers as the engine: per lead, a deque of
recent matching touch times per points rule (for the linear decay), integer
micro-points rounded half to even like ``PointsScorer`` (so the scores are
identical), the group and total caps, the threshold crossing, the policy
(score threshold from awareness, touch kinds named after events), a dict
lookup for the transition, and the owner of the new stage.

* :func:`replay_by_lead` takes the touches grouped by lead and replays all
  touches of one lead, then the next, with the lead's state in local
  variables: the competent loop, and the yardstick of the ratio
  "engine / hand loop".
* :func:`replay` takes them in time order, as the engine does, and keeps
  each lead's state in a dict (and can hand the transition to one state
  machine object per lead, see ``bench/baselines.py``).

What they write, one tuple per record (the same rows as the engine's log,
up to order for :func:`replay_by_lead`; the bench checks it):

========== ====================================================================
record     tuple
========== ====================================================================
created    ``(CREATED, lead, at, touch, stage, team)``
scored     ``(SCORED, lead, at, touch, score, delta)``
threshold  ``(THRESHOLD, lead, at, touch, limit, up)``
transition ``(TRANSITION, lead, at, touch, event, source, target)``
refused    ``(REFUSED, lead, at, touch, event, stage)``
handoff    ``(HANDOFF, lead, at, touch, stage, from_team, to_team)``
========== ====================================================================

``lead`` is the lead's code, ``at`` microseconds, ``touch`` the touch's
position in the batch, scores floats in points. Left out, which the engine
writes: a record's seq, actor, touch id and reason text (the refusal's
message, the policy's reason), the score's breakdown lines (rule, points,
detail text) and the attributes learned; and no ``Journey`` object exists,
only a list per lead. The seed funnel has no SLA, gate or guard and the
default owner rules have no overrides, so none is handled here
(:func:`compile_seed` checks it).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from datetime import timedelta
from fractions import Fraction
from typing import Any

from buyerjourney import Pipeline

CREATED, SCORED, THRESHOLD, TRANSITION, HANDOFF, REFUSED = range(6)
NAMES = ("created", "scored", "threshold", "transition", "handoff", "refused")


def compile_seed(pipeline: Pipeline) -> dict[str, Any]:
    """Read the numbers the loops need from the default seed pipeline (nothing else is general)."""
    scorer: Any = pipeline.scorer
    funnel = pipeline.funnel
    assert all(s.sla is None and not s.gate for s in funnel.stages), "no SLA nor gate here"
    assert all(t.guard is None for t in funnel.transitions), "no guard here"
    assert not pipeline.owners.overrides, "no owner override here"
    groups = {g.name: g for g in scorer.groups}
    decay = groups["web"].decay
    assert all(g.decay == decay for g in scorer.groups), "one decay for every group"
    share = Fraction(decay.fraction)
    whole = share.denominator * (decay.every // timedelta(microseconds=1))
    assert share.numerator == 1, "the loop is written for a decay fraction 1/k"
    group_names = list(groups)
    rules = []
    for rule in scorer.rules:
        rules.append(
            (
                rule.kind,
                int(Fraction(rule.points) * 10**6),
                rule.repeatable,
                group_names.index(rule.group),
            )
        )
    caps = [None if groups[n].cap is None else int(groups[n].cap * 10**6) for n in group_names]
    policies = pipeline.policy.policies  # type: ignore[union-attr]
    threshold = policies[0]
    steps = {(t.source, t.event): t.target for t in funnel.transitions}
    return {
        "whole": whole,
        "rules": rules,
        "caps": caps,
        "total_cap": int(scorer.total_cap * 10**6),
        "thresholds": [(int(t * 10**6), t) for t in sorted(set(pipeline.thresholds))],
        "policy_threshold": int(threshold.threshold * 10**6),
        "policy_event": threshold.event,
        "policy_stages": set(threshold.stages),
        "kind_events": dict(policies[1].mapping),
        "steps": steps,
        "owners": dict(pipeline.owners.defaults),
        "initial": funnel.initial.name,
    }


def _rules_of_kind(config: dict[str, Any], kinds: Sequence[str]) -> list[list[int]]:
    rules = config["rules"]
    return [[j for j, rule in enumerate(rules) if rule[0] == name] for name in kinds]


def replay_by_lead(  # noqa: PLR0915  (one flat loop, on purpose)
    config: dict[str, Any],
    leads: Sequence[tuple[int, Sequence[int], Sequence[int], Sequence[int]]],
    kinds: Sequence[str],
) -> tuple[list[tuple[Any, ...]], dict[int, tuple[str, float, str]]]:
    """Replay each lead's touches, one lead after the other.

    Args:
        config: From :func:`compile_seed`.
        leads: Per lead: its code, and its touches' times, kind codes and
            positions in the batch (in time order).
        kinds: Touch kinds by code.

    Returns:
        The records (tuples, grouped by lead) and each lead's final
        ``(stage, score, owner)``.
    """
    whole = config["whole"]
    half = whole // 2
    rules = config["rules"]
    points = [rule[1] for rule in rules]
    repeatable = [rule[2] for rule in rules]
    group_of = [rule[3] for rule in rules]
    caps = config["caps"]
    n_groups = len(caps)
    total_cap = config["total_cap"]
    thresholds = config["thresholds"]
    policy_threshold = config["policy_threshold"]
    policy_event = config["policy_event"]
    policy_stages = config["policy_stages"]
    kind_events = config["kind_events"]
    event_of_kind = [kind_events.get(name) for name in kinds]
    steps = config["steps"]
    owners = config["owners"]
    initial = config["initial"]
    initial_owner = owners[initial]
    rule_of_kind = _rules_of_kind(config, kinds)
    records: list[tuple[Any, ...]] = []
    append = records.append
    final: dict[int, tuple[str, float, str]] = {}
    for lead, times, kind_codes, positions in leads:
        stage = initial
        owner = initial_owner
        score = 0
        windows: dict[int, list[Any]] = {}  # rule -> [deque of times, sum of times]
        last: dict[int, int] = {}  # rule -> time of the latest matching touch (once-only rules)
        first = True
        for at, k, pos in zip(times, kind_codes, positions, strict=True):
            if first:
                append((CREATED, lead, at, pos, initial, initial_owner))
                first = False
            for j in rule_of_kind[k]:
                if repeatable[j]:
                    window = windows.get(j)
                    if window is None:
                        window = windows[j] = [deque(), 0]
                    window[0].append(at)
                    window[1] += at
                else:
                    last[j] = at
            subtotals = [0] * n_groups
            for j, window in windows.items():
                queue = window[0]
                while queue and at - queue[0] >= whole:
                    window[1] -= queue.popleft()
                count = len(queue)
                if count:
                    q, r = divmod(points[j] * (count * whole - (count * at - window[1])), whole)
                    subtotals[group_of[j]] += q + (r > half or (r == half and q & 1))
            for j, when in last.items():
                age = at - when
                if age < whole:
                    q, r = divmod(points[j] * (whole - age), whole)
                    subtotals[group_of[j]] += q + (r > half or (r == half and q & 1))
            new = 0
            for g in range(n_groups):
                cap = caps[g]
                new += subtotals[g] if cap is None or subtotals[g] <= cap else cap
            if new > total_cap:  # noqa: PLR1730  (faster than min())
                new = total_cap
            old = score
            score = new
            append((SCORED, lead, at, pos, new / 10**6, new / 10**6 - old / 10**6))
            for limit, value in thresholds:
                if old < limit <= new or new < limit <= old:
                    append((THRESHOLD, lead, at, pos, value, new >= limit))
            if stage in policy_stages and new >= policy_threshold:
                event = policy_event
            else:
                event = event_of_kind[k]
            if event is not None:
                target = steps.get((stage, event))
                if target is None:
                    append((REFUSED, lead, at, pos, event, stage))
                else:
                    append((TRANSITION, lead, at, pos, event, stage, target))
                    stage = target
                    to = owners[target]
                    if to != owner:
                        append((HANDOFF, lead, at, pos, target, owner, to))
                        owner = to
        final[lead] = (stage, score / 10**6, owner)
    return records, final


def replay(  # noqa: PLR0915, PLR0917  (one flat loop, on purpose)
    config: dict[str, Any],
    lead_codes: Sequence[int],
    times: Sequence[int],
    kind_codes: Sequence[int],
    kinds: Sequence[str],
    machines: Any = None,
) -> tuple[list[tuple[Any, ...]], dict[int, list[Any]]]:
    """Replay touches given as plain lists in time order; return the records and the lead states.

    *machines*, when given, replaces the dict lookup of the transition with
    one state machine object per lead (see ``bench/baselines.py``): it has
    ``new(initial)`` returning a machine and ``send(machine, event, reason)``
    returning the new stage, or ``None`` when the event is not allowed.
    """
    whole = config["whole"]
    half = whole // 2
    rules = config["rules"]
    caps = config["caps"]
    n_groups = len(caps)
    total_cap = config["total_cap"]
    thresholds = config["thresholds"]
    policy_threshold = config["policy_threshold"]
    policy_event = config["policy_event"]
    policy_stages = config["policy_stages"]
    kind_events = config["kind_events"]
    steps = config["steps"]
    owners = config["owners"]
    initial = config["initial"]
    rule_of_kind = _rules_of_kind(config, kinds)
    records: list[tuple[Any, ...]] = []
    append = records.append
    leads: dict[int, list[Any]] = {}
    for pos, (lead, at, k) in enumerate(zip(lead_codes, times, kind_codes, strict=True)):
        state = leads.get(lead)
        if state is None:
            # stage, score (micro), owner, {rule: [deque of times, sum of times]}, {rule: last time}
            state = leads[lead] = [initial, 0, owners[initial], {}, {}, None]
            if machines is not None:
                state[5] = machines.new(initial)
            append((CREATED, lead, at, pos, initial, owners[initial]))
        windows = state[3]
        last = state[4]
        for j in rule_of_kind[k]:
            if rules[j][2]:
                window = windows.get(j)
                if window is None:
                    window = windows[j] = [deque(), 0]
                window[0].append(at)
                window[1] += at
            else:
                last[j] = at
        subtotals = [0] * n_groups
        for j, window in windows.items():
            queue = window[0]
            while queue and at - queue[0] >= whole:
                window[1] -= queue.popleft()
            count = len(queue)
            if count:
                parts = count * whole - (count * at - window[1])
                q, r = divmod(rules[j][1] * parts, whole)
                subtotals[rules[j][3]] += q + (r > half or (r == half and q & 1))
        for j, when in last.items():
            age = at - when
            if age < whole:
                q, r = divmod(rules[j][1] * (whole - age), whole)
                subtotals[rules[j][3]] += q + (r > half or (r == half and q & 1))
        score = 0
        for g in range(n_groups):
            cap = caps[g]
            score += subtotals[g] if cap is None or subtotals[g] <= cap else cap
        score = min(score, total_cap)
        old = state[1]
        state[1] = score
        append((SCORED, lead, at, pos, score / 10**6, score / 10**6 - old / 10**6))
        for limit, value in thresholds:
            if old < limit <= score or score < limit <= old:
                append((THRESHOLD, lead, at, pos, value, score >= limit))
        stage = state[0]
        event = None
        if stage in policy_stages and score >= policy_threshold:
            event = policy_event
        else:
            event = kind_events.get(kinds[k])
        if event is not None:
            if machines is None:
                target = steps.get((stage, event))
            else:
                target = machines.send(state[5], event, f"touch {kinds[k]}")
            if target is None:
                append((REFUSED, lead, at, pos, event, stage))
            else:
                append((TRANSITION, lead, at, pos, event, stage, target))
                state[0] = target
                owner = owners[target]
                if owner != state[2]:
                    append((HANDOFF, lead, at, pos, target, state[2], owner))
                    state[2] = owner
    return records, leads


def rows_of(records: Sequence[Any], lead_code: dict[str, int]) -> list[tuple[Any, ...]]:
    """The engine's records as the loops' tuples (the fields the loops write), for comparison."""
    from buyerjourney.bulk._schema import to_micros  # noqa: PLC0415

    out: list[tuple[Any, ...]] = []
    position: dict[str, int] = {}
    for r in records:
        lead = lead_code[r.lead_id]
        at = to_micros(r.at)
        pos = position.setdefault(r.touch_id, len(position))
        kind = r.kind.value
        if kind == "created":
            out.append((CREATED, lead, at, pos, r.target, r.to_team))
        elif kind == "scored":
            out.append((SCORED, lead, at, pos, r.score, r.data["delta"]))
        elif kind == "threshold":
            out.append((THRESHOLD, lead, at, pos, r.data["threshold"], r.data["up"]))
        elif kind == "transition":
            out.append((TRANSITION, lead, at, pos, r.event, r.source, r.target))
        elif kind == "refused":
            out.append((REFUSED, lead, at, pos, r.event, r.source))
        elif kind == "handoff":
            out.append((HANDOFF, lead, at, pos, r.target, r.from_team, r.to_team))
        else:  # pragma: no cover - the seed pipeline writes no other kind
            msg = f"the loops do not write {kind} records"
            raise AssertionError(msg)
    return out
