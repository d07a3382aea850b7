"""Owner rules: which team owns a journey in each stage, and who may act for a team.

Owner rules are plain data, like a funnel: frozen attrs classes, tuples and
mappings, never callables, so they can be saved to a TOML or JSON file, read
back, and checked by a verifier without running user code.

* Every stage has a **default** owning team, normally the funnel stage's
  ``owner``.
* **Overrides** are an ordered tuple of :class:`OwnerRule`; the **first**
  override that applies to the stage and whose conditions all match the lead's
  attributes wins over the default.
* **Teams** are names. ``marketing`` and ``sales`` are built in; add your own
  (``customer_success``, ``partners`` ...).
* **Members** map a person to the teams that person holds. An
  :class:`~buyerjourney.Actor` may act for a team when the actor's own
  team is that team, or when the person holds it. In **solo mode** one person
  holds every team: owners per stage stay as they are, so handoffs between
  marketing and sales are still recorded, but that one person may act on both
  sides.

Owners are evaluated at routing time, when a journey enters a stage, from the
lead's attributes at that moment; the owner then stays until the next
transition, even if the attributes change meanwhile.

Every problem found is a :class:`~buyerjourney.errors.Problem` with a stable
code from :data:`PROBLEM_CODES` (``"no-owner"``, ``"unknown-team"`` ...), so
programs need not read the messages. Reading and writing rule files is not
done here but by the file adapter (:func:`~buyerjourney.load_owner_rules`).

Example::

    from buyerjourney import presets
    from buyerjourney._core.owners import Condition, OwnerRule, OwnerRules

    rules = OwnerRules.for_funnel(
        presets.seed(),
        teams=("partners",),
        overrides=(
            OwnerRule("partners", ("consideration",), (Condition("channel", ("partner",)),)),
        ),
    )
    rules.owner("consideration", {"channel": "partner"})  # 'partners'
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final, Literal, get_args

import attrs

from buyerjourney._core.funnel import Funnel
from buyerjourney._core.records import SYSTEM, Actor
from buyerjourney.errors import InvalidOwnerRules, Problem

__all__ = [
    "BUILTIN_TEAMS",
    "MARKETING",
    "OPS",
    "PROBLEM_CODES",
    "SALES",
    "Condition",
    "Op",
    "OwnerRule",
    "OwnerRules",
    "invalid_owner_rules",
    "read_owner_rules",
]

MARKETING: Final = "marketing"
"""The built-in marketing team."""

SALES: Final = "sales"
"""The built-in sales team."""

BUILTIN_TEAMS: Final[tuple[str, ...]] = (MARKETING, SALES)
"""The teams every set of owner rules knows; add your own with ``teams=``."""

Op = Literal["in", "not_in", "gte", "lt"]
"""How a :class:`Condition` compares a lead attribute with its values."""

OPS: Final[tuple[str, ...]] = get_args(Op)
"""Every valid :data:`Op`, in documentation order."""

PROBLEM_CODES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "no-owner": "a stage where some lead would have no owning team (subject: the stage)",
        "unknown-stage": "a default or an override names a stage the funnel does not have",
        "unknown-team": "a default, an override or a member names a team that is not declared",
        "invalid-team": "a declared team name is not an identifier",
        "duplicate-override": "an override repeats an earlier one",
        "shadowed-override": "an override that can never apply: earlier ones match its leads",
        "invalid-member": "a member has an empty name",
        "reserved-member": "a member uses the name reserved for automated changes",
        "invalid-condition": "a condition is malformed (operator, values, attribute)",
        "unknown-key": "a document has a key the schema does not know",
        "missing-key": "a document lacks a key the schema requires",
        "wrong-type": "a value in a document has the wrong type",
        "duplicate-key": "a key appears more than once in a JSON object of a file",
        "format-error": "a file cannot be read or written (suffix, encoding, TOML or JSON)",
    }
)
"""Every code of an owner-rules :class:`~buyerjourney.errors.Problem`, with its meaning.

A problem's ``subject`` says where it is: a location in the rules such as
``overrides[1]``, ``defaults.retention``, ``members.ana``, ``teams[2]`` or
``overrides[0].when[1].op``, except for ``no-owner``, whose subject is the
stage left without an owner.
"""

_EMPTY: Final[Mapping[str, Any]] = MappingProxyType({})
_SYSTEM_NAME: Final = SYSTEM.name
_TOP_KEYS: Final = ("teams", "defaults", "members", "overrides", "solo")
_RULE_KEYS: Final = ("team", "stages", "when", "description")
_CONDITION_KEYS: Final = ("attribute", "op", "values")

# ---------------------------------------------------------------- value helpers

_BOOL, _NUM, _STR = 0, 1, 2
_UNMATCHABLE: Final = object()


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_scalar(value: object) -> bool:
    """Whether *value* may be a condition value: str, bool, or a finite number."""
    if isinstance(value, (str, bool)):
        return True
    return isinstance(value, numbers.Real) and math.isfinite(value)


def _key(value: object) -> object:
    """A type-aware equality key: ``1 == 1.0`` but ``True`` is not ``1``."""
    if isinstance(value, bool):
        return (_BOOL, value)
    if isinstance(value, str):
        return (_STR, value)
    if _is_number(value):
        return (_NUM, value)
    return _UNMATCHABLE


def _got(value: object) -> str:
    return f"got {value!r} that is a {type(value).__name__}"


def _tuple(value: object, field: str, of: type | tuple[type, ...]) -> tuple[Any, ...]:
    """Turn a list or tuple into a tuple, refusing a lone string (a classic slip)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        msg = (
            f"'{field}' must be a tuple or list (got {value!r}); "
            f"write a one-item tuple such as ({value!r},)"
        )
        raise TypeError(msg)
    items = tuple(value)
    for i, item in enumerate(items):
        if not isinstance(item, of):
            names = of.__name__ if isinstance(of, type) else " or ".join(t.__name__ for t in of)
            msg = f"'{field}[{i}]' must be a {names} ({_got(item)})"
            raise TypeError(msg)
    return items


def _builtin(value: Any) -> Any:
    """Numbers of other types (NumPy, fractions) as a plain int or float."""
    if isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return value


def _numeric(values: Iterable[object]) -> list[int | float]:
    return [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]


def _as_values(value: Iterable[str | int | float | bool]) -> tuple[str | int | float | bool, ...]:
    return tuple(_builtin(v) for v in _tuple(value, "values", object))


def _as_stages(value: Iterable[str]) -> tuple[str, ...]:
    return _tuple(value, "stages", str)


def _as_conditions(value: Iterable[Condition]) -> tuple[Condition, ...]:
    return _tuple(value, "when", Condition)


def _as_rules(value: Iterable[OwnerRule]) -> tuple[OwnerRule, ...]:
    return _tuple(value, "overrides", OwnerRule)


def _as_teams(value: Iterable[str]) -> tuple[str, ...]:
    """Built-in teams first, then the others in order, each once."""
    return tuple(dict.fromkeys((*BUILTIN_TEAMS, *_tuple(value, "teams", str))))


def _as_defaults(value: Mapping[str, str]) -> Mapping[str, str]:
    if not isinstance(value, Mapping):
        msg = f"'defaults' must be a mapping of stage to team ({_got(value)})"
        raise TypeError(msg)
    for stage, team in value.items():
        if not isinstance(stage, str) or not isinstance(team, str):
            msg = f"'defaults' maps stage names to team names (got {stage!r}: {team!r})"
            raise TypeError(msg)
    return MappingProxyType(dict(value))


def _as_members(value: Mapping[str, Iterable[str]]) -> Mapping[str, tuple[str, ...]]:
    if not isinstance(value, Mapping):
        msg = f"'members' must be a mapping of person to teams ({_got(value)})"
        raise TypeError(msg)
    out: dict[str, tuple[str, ...]] = {}
    for name, teams in value.items():
        if not isinstance(name, str):
            msg = f"'members' keys must be person names (str) ({_got(name)})"
            raise TypeError(msg)
        out[name] = tuple(dict.fromkeys(_tuple(teams, f"members[{name!r}]", str)))
    return MappingProxyType(out)


def _condition_problems(attribute: object, op: object, values: object, where: str) -> list[Problem]:
    """Everything wrong with one condition, each located under *where*."""
    problems: list[Problem] = []

    def bad(key: str, message: str) -> None:
        location = f"{where}.{key}"
        problems.append(Problem("invalid-condition", f"{location}: {message}", location))

    if not isinstance(attribute, str) or not attribute:
        bad("attribute", f"expected a non-empty attribute name ({_got(attribute)})")
    if op not in OPS:
        expected = ", ".join(map(repr, OPS))
        bad("op", f"expected one of {expected} (got {op!r})")
        return problems
    if not isinstance(values, (list, tuple)):
        bad("values", f"expected a list of values ({_got(values)})")
        return problems
    if op in ("in", "not_in"):
        if not values:
            bad("values", f"op {op!r} needs at least one value (got [])")
        for i, value in enumerate(values):
            if not _is_scalar(value):
                bad(f"values[{i}]", f"expected a str, bool or finite number ({_got(value)})")
    elif len(values) != 1:
        bad(
            "values",
            f"op {op!r} compares with exactly one number "
            f"(got {len(values)} values: {list(values)!r})",
        )
    elif not (_is_scalar(values[0]) and _is_number(values[0])):
        bad("values[0]", f"op {op!r} needs a finite number such as 200 ({_got(values[0])})")
    return problems


def invalid_owner_rules(problems: Iterable[Problem]) -> InvalidOwnerRules:
    """The :class:`~buyerjourney.errors.InvalidOwnerRules` that lists *problems*.

    Its ``problems`` are the :class:`~buyerjourney.errors.Problem` objects
    themselves, and its message lists every one as ``[code] message``.

    Args:
        problems: What is wrong, at least one problem.
    """
    return InvalidOwnerRules(tuple(problems))


# ---------------------------------------------------------------- conditions and rules


@attrs.frozen
class Condition:
    """A test on one lead attribute, used in the ``when`` of an :class:`OwnerRule`.

    Four operators cover routing by segment and by company size:

    * ``"in"`` (the default): the attribute equals one of *values*;
    * ``"not_in"``: the attribute equals none of *values*;
    * ``"gte"``: the attribute is a number ``>=`` the single value;
    * ``"lt"``: the attribute is a number ``<`` the single value.

    A missing attribute, or one whose value is ``None``, never matches, whatever
    the operator: ``not_in`` does not capture leads whose attribute is unknown.
    Equality is type-aware (``1 == 1.0``, but ``True`` is not ``1`` and ``"1"``
    is not ``1``); strings compare exactly. ``gte`` and ``lt`` only match
    numbers (never ``bool`` or numeric strings such as ``"250"``).

    Args:
        attribute: The lead attribute to test (``"channel"``, ``"employees"``).
        values: The values to compare with: one or more strings, bools or
            finite numbers for ``in`` / ``not_in``, exactly one number for
            ``gte`` / ``lt``.
        op: The operator, one of :data:`OPS`.

    Raises:
        InvalidOwnerRules: The condition is malformed (empty values, an
            unknown operator, a non-number for ``gte`` ...).
    """

    attribute: str
    values: tuple[str | int | float | bool, ...] = attrs.field(converter=_as_values)
    op: Op = "in"
    _keys: frozenset[object] = attrs.field(init=False, eq=False, hash=False, repr=False)
    _bound: int | float = attrs.field(init=False, eq=False, hash=False, repr=False)

    def __attrs_post_init__(self) -> None:
        problems = _condition_problems(
            self.attribute, self.op, self.values, f"Condition({self.attribute!r})"
        )
        if problems:
            raise invalid_owner_rules(problems)
        object.__setattr__(self, "_keys", frozenset(_key(v) for v in self.values))
        numeric = _numeric(self.values)
        object.__setattr__(self, "_bound", numeric[0] if self.op in ("gte", "lt") else 0)

    def matches(self, attributes: Mapping[str, Any]) -> bool:
        """Whether the lead's *attributes* satisfy this condition.

        Args:
            attributes: The lead's attributes by name.

        Returns:
            ``False`` whenever the attribute is missing or ``None``.
        """
        value = attributes.get(self.attribute)
        if value is None:
            return False
        op = self.op
        if op == "in":
            return _key(value) in self._keys
        if op == "not_in":
            return _key(value) not in self._keys
        if not _is_number(value):
            return False
        return bool(value >= self._bound) if op == "gte" else bool(value < self._bound)

    def implies(self, other: Condition) -> bool:
        """Whether every lead matching this condition also matches *other*.

        Used to find overrides that can never apply. The answer is sound but
        not complete: ``True`` is always right, ``False`` may be a missed case.

        Args:
            other: The condition to compare with.
        """
        if self.attribute != other.attribute:
            return False
        a, b = self.op, other.op
        if a == "in":
            if b == "in":
                return self._keys <= other._keys
            if b == "not_in":
                return not self._keys & other._keys
            mine = _numeric(self.values)
            if len(mine) != len(self.values):
                return False
            if b == "gte":
                return all(v >= other._bound for v in mine)
            return all(v < other._bound for v in mine)
        if a == "not_in":
            return b == "not_in" and other._keys <= self._keys
        if b == a:
            if a == "gte":
                return self._bound >= other._bound
            return self._bound <= other._bound
        if b == "not_in":
            theirs = _numeric(other.values)
            if a == "gte":
                return all(v < self._bound for v in theirs)
            return all(v >= self._bound for v in theirs)
        return False

    def __str__(self) -> str:
        if self.op in ("gte", "lt"):
            sign = ">=" if self.op == "gte" else "<"
            return f"{self.attribute} {sign} {self.values[0]!r}"
        word = "in" if self.op == "in" else "not in"
        return f"{self.attribute} {word} {list(self.values)!r}"


@attrs.frozen
class OwnerRule:
    """An override: in some stages, leads matching some conditions belong to *team*.

    Args:
        team: The owning team when the rule applies.
        stages: The stages the rule applies to; empty means every stage.
        when: Conditions that must all match; empty means always.
        description: Why the rule exists, for people and error messages.
    """

    team: str = attrs.field(validator=attrs.validators.instance_of(str))
    stages: tuple[str, ...] = attrs.field(default=(), converter=_as_stages)
    when: tuple[Condition, ...] = attrs.field(default=(), converter=_as_conditions)
    description: str = attrs.field(default="", validator=attrs.validators.instance_of(str))

    @property
    def unconditional(self) -> bool:
        """Whether the rule has no conditions (it matches every lead)."""
        return not self.when

    def applies_to(self, stage: str) -> bool:
        """Whether the rule concerns *stage* (it lists it, or lists no stage).

        Args:
            stage: A stage name.
        """
        return not self.stages or stage in self.stages

    def matches(self, attributes: Mapping[str, Any]) -> bool:
        """Whether every condition matches the lead's *attributes*.

        Args:
            attributes: The lead's attributes by name.
        """
        return all(c.matches(attributes) for c in self.when)

    def __str__(self) -> str:
        where = f" in {', '.join(self.stages)}" if self.stages else " in every stage"
        when = f" when {' and '.join(map(str, self.when))}" if self.when else ""
        return f"team {self.team!r}{where}{when}"


def _rule_to_dict(rule: OwnerRule) -> dict[str, Any]:
    return {
        "team": rule.team,
        "stages": list(rule.stages),
        "when": [
            {"attribute": c.attribute, "op": c.op, "values": list(c.values)} for c in rule.when
        ],
        "description": rule.description,
    }


def _rule_label(index: int, rule: OwnerRule) -> str:
    about = f": {rule.description}" if rule.description else ""
    return f"overrides[{index}] ({rule}{about})"


def _covers(earlier: OwnerRule, later: OwnerRule) -> bool:
    """Whether *earlier* matches every lead that *later* matches (stages aside)."""
    return all(any(mine.implies(theirs) for mine in later.when) for theirs in earlier.when)


def _canonical(rule: OwnerRule) -> tuple[object, ...]:
    conditions = frozenset(
        (c.attribute, c.op, frozenset(_key(v) for v in c.values)) for c in rule.when
    )
    return (rule.team, frozenset(rule.stages), conditions)


def _funnel_teams(funnel: Funnel) -> tuple[str, ...]:
    return tuple(dict.fromkeys(s.owner for s in funnel.stages if s.owner is not None))


# ---------------------------------------------------------------- the rule set


@attrs.frozen
class OwnerRules:
    """The owner rules of a funnel: defaults per stage, ordered overrides, teams, members.

    Build them with :meth:`for_funnel`, :meth:`solo` or :func:`load_owner_rules`,
    which validate against the funnel. Direct construction only checks types;
    call :meth:`validate` before use.

    Args:
        defaults: Stage name to owning team, used when no override matches.
        overrides: Rules tried in order; the first that applies to the stage
            and matches the lead wins over the default.
        teams: The known teams. The built-in teams are always included, first.
        members: Person name to the teams that person holds. A person acts
            for those teams in addition to the team on their
            :class:`~buyerjourney.Actor`. A team that some member holds has
            declared its members: only they act for it, whatever team an
            actor claims.
    """

    defaults: Mapping[str, str] = attrs.field(converter=_as_defaults, hash=False)
    overrides: tuple[OwnerRule, ...] = attrs.field(default=(), converter=_as_rules)
    teams: tuple[str, ...] = attrs.field(default=BUILTIN_TEAMS, converter=_as_teams)
    members: Mapping[str, tuple[str, ...]] = attrs.field(
        factory=dict, converter=_as_members, hash=False
    )
    _by_stage: Mapping[str, tuple[OwnerRule, ...]] = attrs.field(
        init=False, eq=False, hash=False, repr=False
    )
    _wildcard: tuple[OwnerRule, ...] = attrs.field(init=False, eq=False, hash=False, repr=False)
    _held: Mapping[str, frozenset[str]] = attrs.field(init=False, eq=False, hash=False, repr=False)
    _declared: frozenset[str] = attrs.field(init=False, eq=False, hash=False, repr=False)

    def __attrs_post_init__(self) -> None:
        named = dict.fromkeys((*self.defaults, *(s for r in self.overrides for s in r.stages)))
        by_stage = {
            stage: tuple(r for r in self.overrides if r.applies_to(stage)) for stage in named
        }
        object.__setattr__(self, "_by_stage", by_stage)
        object.__setattr__(self, "_wildcard", tuple(r for r in self.overrides if not r.stages))
        held = {name: frozenset(teams) for name, teams in self.members.items()}
        object.__setattr__(self, "_held", held)
        declared = frozenset(team for teams in held.values() for team in teams)
        object.__setattr__(self, "_declared", declared)

    # ------------------------------------------------------------ construction

    @classmethod
    def for_funnel(
        cls,
        funnel: Funnel,
        *,
        overrides: Iterable[OwnerRule] = (),
        teams: Iterable[str] = (),
        members: Mapping[str, Iterable[str]] | None = None,
        defaults: Mapping[str, str] | None = None,
    ) -> OwnerRules:
        """Owner rules whose defaults are the funnel's stage owners, validated.

        Args:
            funnel: The funnel the rules are for.
            overrides: Ordered override rules (first match wins).
            teams: Extra teams. The built-in teams and every team a stage of
                the funnel names as its owner are known already.
            members: Person name to the teams that person holds.
            defaults: Stage name to team, replacing the funnel's stage owner
                for those stages.

        Raises:
            InvalidOwnerRules: Listing every problem (see :meth:`problems`).
        """
        merged = {s.name: s.owner for s in funnel.stages if s.owner is not None}
        merged.update(defaults or {})
        rules = cls(
            defaults=merged,
            overrides=tuple(overrides),
            teams=(*_funnel_teams(funnel), *_tuple(teams, "teams", str)),
            members=members or {},
        )
        rules.validate(funnel)
        return rules

    @classmethod
    def solo(
        cls, funnel: Funnel, person: str = "founder", *, teams: Iterable[str] | None = None
    ) -> OwnerRules:
        """Solo mode: one person holds every team.

        The owning team of each stage stays as in the funnel, so a move from a
        marketing stage to a sales stage is still a handoff and is still
        recorded: the solo entrepreneur switches hats, and the log shows when.
        Only who may act changes: *person* may act for every team.

        Args:
            funnel: The funnel the rules are for.
            person: The one person (an :class:`~buyerjourney.Actor` name).
            teams: Extra teams the person also holds, beyond the built-in teams
                and the teams the funnel's stages name.

        Raises:
            InvalidOwnerRules: The funnel leaves a stage without an owner.
        """
        every = _as_teams((*_funnel_teams(funnel), *(teams or ())))
        return cls.for_funnel(funnel, teams=every, members={person: every})

    # ------------------------------------------------------------ queries

    def matching_rule(self, stage: str, attributes: Mapping[str, Any] = _EMPTY) -> OwnerRule | None:
        """The first override that applies to *stage* and matches, or ``None``.

        ``None`` means the stage's default owner applies.

        Args:
            stage: The stage the journey enters.
            attributes: The lead's attributes at that moment.
        """
        for rule in self._by_stage.get(stage, self._wildcard):
            for condition in rule.when:
                if not condition.matches(attributes):
                    break
            else:
                return rule
        return None

    def owner(self, stage: str, attributes: Mapping[str, Any] = _EMPTY) -> str:
        """The team that owns a journey entering *stage*.

        The first matching override wins; otherwise the stage's default.

        Args:
            stage: The stage the journey enters.
            attributes: The lead's attributes at that moment.

        Raises:
            InvalidOwnerRules: No default and no matching override: the rules
                have a gap that :meth:`validate` would have reported.
        """
        rule = self.matching_rule(stage, attributes)
        if rule is not None:
            return rule.team
        team = self.defaults.get(stage)
        if team is None:
            raise invalid_owner_rules(
                [
                    Problem(
                        "no-owner",
                        f"no owner for stage {stage!r} and attributes {dict(attributes)!r}: the "
                        "stage has no default and no override matched; add a default or an "
                        "unconditional override, and call validate(funnel) to find every gap",
                        stage,
                    )
                ]
            )
        return team

    def may_act(self, actor: Actor, team: str) -> bool:
        """Whether *actor* may act for *team*.

        True when the person holds *team* in :attr:`members`, or when the
        actor's own team is *team* and *team* has not declared its members (no
        member holds it): a team with declared members cannot be claimed. The
        system actor acts for no team by this rule; the engine lets it perform
        automated moves separately.

        Args:
            actor: Who wants to act.
            team: The team the action needs (usually the owner of the stage).
        """
        if actor == SYSTEM:
            return False
        held = self._held.get(actor.name)
        if held is not None and team in held:
            return True
        return actor.team is not None and actor.team == team and team not in self._declared

    def teams_of(self, actor: Actor) -> tuple[str, ...]:
        """Every known team *actor* may act for, in the order of :attr:`teams`.

        Args:
            actor: Who wants to act.
        """
        return tuple(t for t in self.teams if self.may_act(actor, t))

    @property
    def solo_member(self) -> str | None:
        """The first member holding every known team, or ``None``."""
        every = frozenset(self.teams)
        return next((name for name, held in self._held.items() if every <= held), None)

    @property
    def is_solo(self) -> bool:
        """Whether one member holds every known team (solo mode)."""
        return self.solo_member is not None

    # ------------------------------------------------------------ validation

    def problems(self, funnel: Funnel) -> list[Problem]:
        """Every problem of these rules for *funnel*; empty when they are sound.

        Each is a :class:`~buyerjourney.errors.Problem` whose code is one of
        :data:`PROBLEM_CODES`: ``invalid-team`` (a team that is not an
        identifier); ``unknown-stage`` and ``unknown-team`` (defaults,
        overrides and members naming stages not in the funnel or teams not in
        :attr:`teams`); ``invalid-member`` and ``reserved-member`` (an empty
        member name, or ``"system"``); ``duplicate-override`` and
        ``shadowed-override`` (overrides that can never apply because earlier
        ones already match every lead they would); and ``no-owner``, a gap:
        a stage where some lead would have no owner.

        Args:
            funnel: The funnel the rules are for.

        Returns:
            Every problem, in the order: teams, defaults, overrides, members, gaps.
        """
        return _rule_problems(self, funnel, range(len(self.overrides)), gaps=True)

    def validate(self, funnel: Funnel) -> None:
        """Raise if :meth:`problems` finds anything.

        Args:
            funnel: The funnel the rules are for.

        Raises:
            InvalidOwnerRules: Listing every problem, not only the first.
        """
        problems = self.problems(funnel)
        if problems:
            raise invalid_owner_rules(problems)

    # ------------------------------------------------------------ serialization

    def to_dict(self) -> dict[str, Any]:
        """The rules as plain, JSON- and TOML-ready data (the file schema).

        Every default is written out, so the result does not depend on the
        funnel's stage owners when read back.
        """
        return {
            "teams": list(self.teams),
            "defaults": dict(self.defaults),
            "members": {name: list(teams) for name, teams in self.members.items()},
            "overrides": [_rule_to_dict(r) for r in self.overrides],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, funnel: Funnel | None = None) -> OwnerRules:
        """Read rules from the file schema (the output of :meth:`to_dict`).

        Top-level keys, all optional: ``teams`` (extra teams), ``defaults``
        (stage to team), ``members`` (person to teams), ``overrides`` (a list
        of rules with ``team``, ``stages``, ``when`` and ``description``; each
        condition has ``attribute``, ``op`` (default ``"in"``) and ``values``)
        and ``solo`` (a person who then holds every known team).

        Args:
            data: The parsed document.
            funnel: If given, stages not in ``defaults`` take the funnel's stage
                owner, the funnel's teams are known, and the result is validated.

        Raises:
            InvalidOwnerRules: Listing every problem, each with its location,
                e.g. ``overrides[1].when[0].op``, what was received and what is
                expected; with a *funnel*, the problems of the rules that are
                well-formed too.
        """
        rules, problems = read_owner_rules(data, funnel)
        if rules is None or problems:
            raise invalid_owner_rules(problems)
        return rules


# ---------------------------------------------------------------- validation


def _rule_problems(
    rules: OwnerRules, funnel: Funnel, labels: Sequence[int], *, gaps: bool
) -> list[Problem]:
    """The problems of *rules* for *funnel*.

    *labels* gives the index each override had in its document (overrides that
    could not be read leave holes); *gaps* is false when some of the document
    could not be read, since a stage may then lack an owner only because its
    default or override was dropped.
    """
    problems: list[Problem] = []
    stages = funnel.stage_names
    known_stages = frozenset(stages)
    known_teams = frozenset(rules.teams)
    stage_list = ", ".join(stages)
    team_list = ", ".join(rules.teams)
    add_team = "add it to teams or fix the name"

    for i, team in enumerate(rules.teams):
        if not team.isidentifier():
            problems.append(
                Problem(
                    "invalid-team",
                    f"teams: {team!r} is not an identifier; use letters, digits and _",
                    f"teams[{i}]",
                )
            )

    for stage, team in rules.defaults.items():
        where = f"defaults.{stage}"
        if stage not in known_stages:
            problems.append(
                Problem(
                    "unknown-stage",
                    f"defaults: stage {stage!r} is not in funnel {funnel.name!r} "
                    f"(stages: {stage_list})",
                    where,
                )
            )
        if team not in known_teams:
            problems.append(
                Problem(
                    "unknown-team",
                    f"defaults: stage {stage!r} defaults to unknown team {team!r} "
                    f"(known: {team_list}); {add_team}",
                    where,
                )
            )

    overrides = rules.overrides
    seen: dict[tuple[object, ...], int] = {}
    for j, rule in enumerate(overrides):
        where = f"overrides[{labels[j]}]"
        label = _rule_label(labels[j], rule)
        for stage in rule.stages:
            if stage not in known_stages:
                problems.append(
                    Problem(
                        "unknown-stage",
                        f"{label}: stage {stage!r} is not in funnel {funnel.name!r} "
                        f"(stages: {stage_list})",
                        where,
                    )
                )
        if rule.team not in known_teams:
            problems.append(
                Problem(
                    "unknown-team",
                    f"{label}: unknown team {rule.team!r} (known: {team_list}); {add_team}",
                    where,
                )
            )
        canonical = _canonical(rule)
        if canonical in seen:
            problems.append(
                Problem(
                    "duplicate-override",
                    f"{label} repeats overrides[{labels[seen[canonical]]}]; remove one of them",
                    where,
                )
            )
            continue
        seen[canonical] = j
        applies = [s for s in stages if rule.applies_to(s)]
        if not applies:
            continue
        shadows: dict[int, None] = {}
        for stage in applies:
            earlier = next(
                (
                    i
                    for i, other in enumerate(overrides[:j])
                    if other.applies_to(stage) and _covers(other, rule)
                ),
                None,
            )
            if earlier is None:
                break
            shadows[earlier] = None
        else:
            by = ", ".join(f"overrides[{labels[i]}]" for i in sorted(shadows))
            verbs = (
                "comes first and already matches"
                if len(shadows) == 1
                else "come first and already match"
            )
            problems.append(
                Problem(
                    "shadowed-override",
                    f"{label} can never apply: {by} {verbs} every lead it would match; "
                    "move it earlier, narrow the earlier rule, or remove it",
                    where,
                )
            )

    for name, teams in rules.members.items():
        where = f"members.{name}" if name else "members"
        if not name:
            problems.append(Problem("invalid-member", "members: a member has an empty name", where))
        elif name == _SYSTEM_NAME:
            problems.append(
                Problem(
                    "reserved-member",
                    f"members: {name!r} is reserved for automated changes and cannot hold "
                    "teams; give the person another name",
                    where,
                )
            )
        unknown = [t for t in teams if t not in known_teams]
        if unknown:
            problems.append(
                Problem(
                    "unknown-team",
                    f"members: {name!r} holds unknown team(s) "
                    f"{', '.join(map(repr, unknown))} (known: {team_list}); {add_team}",
                    where,
                )
            )

    if gaps:
        problems.extend(_gaps(rules, stages, labels))
    return problems


def _gaps(rules: OwnerRules, stages: Sequence[str], labels: Sequence[int]) -> Iterable[Problem]:
    """A ``no-owner`` problem for each stage where some lead would have no owner."""
    for stage in stages:
        if stage in rules.defaults:
            continue
        covering = [(i, r) for i, r in enumerate(rules.overrides) if r.applies_to(stage)]
        if any(r.unconditional for _, r in covering):
            continue
        fix = (
            f"give the stage an owner (Stage(owner=...) or defaults={{{stage!r}: ...}}) "
            "or add an unconditional override for it"
        )
        if covering:
            listed = "; ".join(_rule_label(labels[i], r) for i, r in covering)
            segment = " and ".join(f"not ({' and '.join(map(str, r.when))})" for _, r in covering)
            message = (
                f"gap: stage {stage!r} has no default owner and only conditional "
                f"overrides cover it ({listed}), so leads where {segment} would have "
                f"no owner; {fix}"
            )
        else:
            message = (
                f"gap: stage {stage!r} has no default owner and no override covers it, "
                f"so no lead there would have an owner; {fix}"
            )
        yield Problem("no-owner", message, stage)


# ---------------------------------------------------------------- reading documents


class _Problems(list[Problem]):
    """The problems of a document being read, each located."""

    def add(self, code: str, where: str, message: str) -> None:
        self.append(Problem(code, f"{where}: {message}", where))


def _str_list(value: object, where: str, problems: _Problems) -> list[str]:
    if not isinstance(value, (list, tuple)):
        problems.add("wrong-type", where, f"expected a list of strings ({_got(value)})")
        return []
    out: list[str] = []
    for i, item in enumerate(value):
        if isinstance(item, str) and item:
            out.append(item)
        else:
            problems.add(
                "wrong-type", f"{where}[{i}]", f"expected a non-empty string ({_got(item)})"
            )
    return out


def _table(value: object, where: str, problems: _Problems) -> Mapping[str, Any]:
    if isinstance(value, Mapping):
        return value
    problems.add("wrong-type", where, f"expected a table (a mapping) ({_got(value)})")
    return {}


def _unknown_keys(
    table: Mapping[str, Any], known: Sequence[str], where: str, problems: _Problems
) -> None:
    for key in table:
        if key not in known:
            expected = ", ".join(known)
            problems.add("unknown-key", f"{where}{key}", f"unknown key; expected one of {expected}")


def _parse_condition(value: object, where: str, problems: _Problems) -> Condition | None:
    if not isinstance(value, Mapping):
        _table(value, where, problems)
        return None
    table = value
    _unknown_keys(table, _CONDITION_KEYS, f"{where}.", problems)
    missing = [k for k in ("attribute", "values") if k not in table]
    for key in missing:
        problems.add("missing-key", f"{where}.{key}", f"missing; expected e.g. {key} = ...")
    if missing:
        return None
    attribute, op, values = table["attribute"], table.get("op", "in"), table["values"]
    found = _condition_problems(attribute, op, values, where)
    problems.extend(found)
    if found:
        return None
    return Condition(attribute, tuple(values), op)


def _parse_rule(value: object, where: str, problems: _Problems) -> OwnerRule | None:
    table = _table(value, where, problems)
    if not isinstance(value, Mapping):
        return None
    _unknown_keys(table, _RULE_KEYS, f"{where}.", problems)
    before = len(problems)
    team = table.get("team")
    if "team" not in table:
        problems.add(
            "missing-key", f"{where}.team", "missing; expected the owning team, e.g. team = 'sales'"
        )
    elif not isinstance(team, str) or not team:
        problems.add("wrong-type", f"{where}.team", f"expected a team name ({_got(team)})")
    stages = _str_list(table.get("stages", []), f"{where}.stages", problems)
    description = table.get("description", "")
    if not isinstance(description, str):
        problems.add(
            "wrong-type", f"{where}.description", f"expected a string ({_got(description)})"
        )
    when_value = table.get("when", [])
    conditions: list[Condition] = []
    if isinstance(when_value, (list, tuple)):
        for k, item in enumerate(when_value):
            condition = _parse_condition(item, f"{where}.when[{k}]", problems)
            if condition is not None:
                conditions.append(condition)
    else:
        problems.add(
            "wrong-type", f"{where}.when", f"expected a list of conditions ({_got(when_value)})"
        )
    if len(problems) > before or not isinstance(team, str) or not isinstance(description, str):
        return None
    return OwnerRule(team, tuple(stages), tuple(conditions), description)


def read_owner_rules(
    data: object, funnel: Funnel | None = None, *, validate: bool = True
) -> tuple[OwnerRules | None, list[Problem]]:
    """Read the file schema (see :meth:`OwnerRules.from_dict`), collecting every problem.

    Every problem of the document's shape is found, each located (``subject``
    is the location, e.g. ``overrides[1].when[0].op``). With a *funnel*,
    stages the document's ``defaults`` do not list keep the funnel's stage
    owner, the funnel's teams are known, and, when *validate* is true, the
    rules read are checked against the funnel too: the problems of the
    well-formed parts are listed after those of the shape, located by their
    place in the document (gaps only when the whole document could be read).

    Args:
        data: The parsed document (a mapping, if it is right).
        funnel: The funnel the rules are for, if known.
        validate: Whether to check the rules against *funnel*.

    Returns:
        The rules (``None`` when the document is not a mapping) and every
        problem found, empty when the rules may be used.
    """
    problems = _Problems()
    if not isinstance(data, Mapping):
        problems.add("wrong-type", "document", f"expected a table (a mapping) ({_got(data)})")
        return None, problems
    top = data
    _unknown_keys(top, _TOP_KEYS, "", problems)

    teams = _str_list(top.get("teams", []), "teams", problems)

    defaults: dict[str, str] = {}
    for stage, team in _table(top.get("defaults", {}), "defaults", problems).items():
        if isinstance(team, str) and team:
            defaults[str(stage)] = team
        else:
            problems.add("wrong-type", f"defaults.{stage}", f"expected a team name ({_got(team)})")

    members: dict[str, list[str]] = {}
    for name, held in _table(top.get("members", {}), "members", problems).items():
        members[str(name)] = _str_list(held, f"members.{name}", problems)

    solo = top.get("solo")
    if solo is not None and (not isinstance(solo, str) or not solo):
        problems.add("wrong-type", "solo", f"expected the name of the one person ({_got(solo)})")

    overrides: list[OwnerRule] = []
    labels: list[int] = []
    raw_overrides = top.get("overrides", [])
    if isinstance(raw_overrides, (list, tuple)):
        for i, item in enumerate(raw_overrides):
            rule = _parse_rule(item, f"overrides[{i}]", problems)
            if rule is not None:
                overrides.append(rule)
                labels.append(i)
    else:
        problems.add("wrong-type", "overrides", f"expected a list of rules ({_got(raw_overrides)})")

    if funnel is not None:
        merged = {s.name: s.owner for s in funnel.stages if s.owner is not None}
        merged.update(defaults)
        defaults = merged
        teams = [*_funnel_teams(funnel), *teams]
    known = _as_teams(teams)
    if isinstance(solo, str) and solo:
        members[solo] = [*members.get(solo, []), *known]
    rules = OwnerRules(defaults=defaults, overrides=tuple(overrides), teams=known, members=members)
    if funnel is not None and validate:
        problems.extend(_rule_problems(rules, funnel, labels, gaps=not problems))
    return rules, problems
