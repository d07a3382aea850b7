"""The hand-written reference: ``default_pipeline(presets.seed())`` replayed in plain Python.

One loop over the touches with dicts and lists, as one would write it for
one pipeline without the library: per lead, a deque of recent matching
touch times per points rule (for the linear decay), integer micro-points
rounded half to even like the library (so the scores are identical), the
threshold crossing, the policy (score threshold from awareness, touch kinds
named after events), a dict lookup for the transition, the owner of the
new stage, and records appended as tuples. The seed funnel has no SLA and
the default owner rules have no overrides, so neither is handled here.

It is the yardstick of the issue's "within 1.5x of a hand-written loop".
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from datetime import timedelta
from fractions import Fraction
from typing import Any

from buyerjourney import Pipeline

CREATED, SCORED, THRESHOLD, TRANSITION, HANDOFF, REFUSED = range(6)


def compile_seed(pipeline: Pipeline) -> dict[str, Any]:
    """Read the numbers the loop needs from the default seed pipeline (nothing else is general)."""
    scorer: Any = pipeline.scorer
    funnel = pipeline.funnel
    groups = {g.name: g for g in scorer.groups}
    decay = groups["web"].decay
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
        "thresholds": [int(t * 10**6) for t in pipeline.thresholds],
        "policy_threshold": int(threshold.threshold * 10**6),
        "policy_event": threshold.event,
        "policy_stages": set(threshold.stages),
        "kind_events": dict(policies[1].mapping),
        "steps": steps,
        "owners": dict(pipeline.owners.defaults),
        "initial": funnel.initial.name,
    }


def replay(  # noqa: PLR0915, PLR0917  (one flat loop, on purpose)
    config: dict[str, Any],
    lead_codes: Sequence[int],
    times: Sequence[int],
    kind_codes: Sequence[int],
    kinds: Sequence[str],
    machines: Any = None,
) -> tuple[list[tuple[Any, ...]], dict[int, list[Any]]]:
    """Replay touches given as plain lists; return the records (tuples) and the lead states.

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
    rule_of_kind = {
        k: [j for j, rule in enumerate(rules) if rule[0] == name] for k, name in enumerate(kinds)
    }
    records: list[tuple[Any, ...]] = []
    append = records.append
    leads: dict[int, list[Any]] = {}
    for lead, at, k in zip(lead_codes, times, kind_codes, strict=True):
        state = leads.get(lead)
        if state is None:
            # stage, score (micro), owner, {rule: [deque of times, sum of times]}, {rule: last time}
            state = leads[lead] = [initial, 0, owners[initial], {}, {}, None]
            if machines is not None:
                state[5] = machines.new(initial)
            append((len(records), CREATED, lead, at, initial, owners[initial]))
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
        append((len(records), SCORED, lead, at, score / 10**6, (score - old) / 10**6))
        for threshold in thresholds:
            if old < threshold <= score or score < threshold <= old:
                append((len(records), THRESHOLD, lead, at, threshold, score >= threshold))
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
                append((len(records), REFUSED, lead, at, event, stage))
            else:
                append((len(records), TRANSITION, lead, at, event, stage, target))
                state[0] = target
                owner = owners[target]
                if owner != state[2]:
                    append((len(records), HANDOFF, lead, at, target, state[2], owner))
                    state[2] = owner
    return records, leads
