"""Definition files: funnels, owner rules and pipelines as TOML or JSON documents.

``load_funnel(path)`` reads a funnel file and ``dump_funnel(funnel, path)``
writes one; ``loads_funnel`` and ``dumps_funnel`` do the same with text. For
every valid funnel ``loads_funnel(dumps_funnel(f, format=x), format=x) == f``,
descriptions with quotes, newlines and any Unicode included. Loading never
runs code: a guard is only the name of a hook that the application registers
in :class:`~buyerjourney.Hooks`.

``load_owner_rules(path, funnel)`` and ``save_owner_rules(rules, path)`` do
the same for owner rules (the schema of
:meth:`~buyerjourney.OwnerRules.from_dict`). Both kinds of file are read and
written the same way: the suffix (``.toml`` or ``.json``, in any case) gives
the format, files are UTF-8 (a byte order mark is tolerated) with Unix line
endings, TOML is parsed by :mod:`tomllib` (``tomli`` before Python 3.11) and
written by ``tomli-w``, and TOML's limits are checked before anything is
written: a lone surrogate or an integer beyond 64 bits is refused with its
location, and JSON can hold either.

``load_pipeline(path)`` and ``loads_pipeline(text)`` read a pipeline file
(``buyerjourney.pipeline/1``): the funnel (a preset name, the path of a
funnel file, or an inline ``[funnel]`` table), the owner rules (a path or an
inline ``[owners]`` table), the scorer and the policy (tables with a
``type``), and the thresholds; a key left out takes the value of
:func:`~buyerjourney.default_pipeline`. It never runs code either: custom
scorers and policies are installed plugins named by their entry point, and
guards come from the :class:`~buyerjourney.Hooks` the caller passes. The
schema is in the file-format how-to.

Every reader is safe with any input: at most :data:`MAX_FILE_BYTES` are read
from a file (so a device that never ends is refused at once), a document
nested more than :data:`MAX_DEPTH` levels, an integer too long to convert
and a duration too long for :class:`datetime.timedelta` are reported as
problems, and a byte order mark at the start of a text is dropped.

The funnel schema (``buyerjourney.funnel/1``), in TOML::

    format = "buyerjourney.funnel/1"   # required, first
    name = "seed"                      # required
    description = "..."                # optional, default ""

    [[stages]]                         # one table per stage, in order
    name = "awareness"                 # required, a Python identifier
    rank = 10                          # required, an integer >= 0
    kind = "open"                      # open | won | lost | disqualified | after_purchase
                                       #   (default open)
    owner = "marketing"                # optional, default: no owner
    initial = true                     # optional, default false
    terminal = false                   # optional, default true for lost and
                                       #   disqualified stages, false otherwise
    gate = false                       # optional, default false
    sla = "PT72H"                      # optional, an ISO-8601 duration (see below)
    description = "..."                # optional, default ""

    [[transitions]]                    # one table per transition, in priority order
    event = "engage"                   # required
    source = "awareness"               # required, a stage name
    target = "consideration"           # required, a stage name
    direction = "forward"              # forward | backward | exit (default forward)
    guard = "score_at_least_50"        # optional, the name of a registered guard
    bypasses_gate = false              # optional, default false: true declares that
                                       #   the move skips a gate stage on purpose
    description = "..."                # optional, default ""

JSON has the same structure: an object with ``format``, ``name``,
``description``, and arrays of objects ``stages`` and ``transitions``
(``transitions`` may be left out when there are none). In JSON an optional
``owner``, ``sla`` or ``guard`` may also be ``null``, meaning "not set".

An SLA is an ISO-8601 duration made of days, hours, minutes and seconds,
``PnDTnHnMnS``, each part optional but at least one present; only the seconds
may have a fraction, down to the microsecond: ``"PT72H"``, ``"P2DT4H30M"``,
``"PT0.5S"``, ``"P1DT2H3M4.000005S"``. Years, months and weeks are not
accepted (a month has no fixed length).

Files are written in a canonical form: keys in the order above, default
values left out, except that ``terminal`` is written whenever it differs from
the default for the stage's kind. SLAs are written with whole days split off
(72 hours is written ``"P3D"``). In TOML each stage and each transition is a
``[[stages]]`` / ``[[transitions]]`` table, and every string is a one-line
basic string (a line break in it is escaped).

Errors:
    A document that is not valid TOML or JSON, or that breaks the schema
    (an unknown key, a wrong type, a bad kind or direction, a bad duration, a
    missing key, an unsupported ``format``) raises
    :class:`~buyerjourney.errors.FunnelFormatError`. Every schema problem
    found is listed in one error, each with its location in the document,
    e.g. ``stages[2].sla``. A document that follows the schema but describes
    an invalid funnel raises :class:`~buyerjourney.errors.InvalidFunnel` from
    the :class:`~buyerjourney.Funnel` constructor, listing every problem.
    Owner-rule files raise :class:`~buyerjourney.errors.InvalidOwnerRules`
    instead, for both kinds of problem, each a
    :class:`~buyerjourney.errors.Problem` whose message starts with the file
    name. Pipeline files raise :class:`~buyerjourney.errors.PipelineFormatError`
    (a ``FunnelFormatError``) for their own problems, and the errors above for
    the funnel and owner rules they hold or name.
"""

from __future__ import annotations

import difflib
import enum
import json
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import date, datetime, time, timedelta
from functools import partial
from pathlib import Path
from typing import Any, Final, Literal, NoReturn, TypeVar

import attrs
import tomli_w

from buyerjourney import presets
from buyerjourney._core.calendar import WorkingCalendar
from buyerjourney._core.funnel import Direction, Funnel, Stage, StageKind, Transition
from buyerjourney._core.owners import (
    BUILTIN_TEAMS,
    OwnerRules,
    invalid_owner_rules,
    read_owner_rules,
)
from buyerjourney._core.policies import (
    ANY_STAGE,
    AllOf,
    AnyOf,
    MatrixPolicy,
    Policy,
    ThresholdPolicy,
    TouchKindPolicy,
    load_policy,
    stages_allowing,
)
from buyerjourney._core.protocols import Hooks
from buyerjourney._core.scoring import (
    AttributeRule,
    CombinedScorer,
    FitCriterion,
    FitGrader,
    LinearDecay,
    PointsRule,
    PointsScorer,
    ScoreGroup,
    Scorer,
    TimeWindow,
    load_scorer,
)
from buyerjourney._pipeline import Pipeline, default_policy, default_scorer
from buyerjourney.errors import (
    BuyerJourneyError,
    FunnelFormatError,
    HookError,
    PipelineFormatError,
    Problem,
    UnknownHook,
)

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

__all__ = [
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "PIPELINE_SCHEMA",
    "SCHEMA",
    "FileFormat",
    "dump_funnel",
    "dumps_funnel",
    "load_funnel",
    "load_owner_rules",
    "load_pipeline",
    "load_unchecked_owner_rules",
    "loads_funnel",
    "loads_pipeline",
    "save_owner_rules",
]

FileFormat = Literal["toml", "json"]
"""The two encodings of a funnel file."""

SCHEMA: Final = "buyerjourney.funnel/1"
"""The value of the ``format`` key that this version reads and writes."""

_SCHEMA_FAMILY: Final = "buyerjourney.funnel/"
_SUFFIXES: Final[Mapping[str, FileFormat]] = {".toml": "toml", ".json": "json"}
_TOML_INT_MIN: Final = -(2**63)
_TOML_INT_MAX: Final = 2**63 - 1

_TOP_KEYS: Final = ("format", "name", "description", "acceptance", "stages", "transitions")
_STAGE_KEYS: Final = (
    "name",
    "rank",
    "kind",
    "owner",
    "initial",
    "terminal",
    "gate",
    "sla",
    "sla_calendar",
    "accept_sla",
    "accept_calendar",
    "description",
)
_CALENDAR_KEYS: Final = ("timezone", "days", "start", "end", "holidays")
_TRANSITION_KEYS: Final = (
    "event",
    "source",
    "target",
    "direction",
    "guard",
    "bypasses_gate",
    "description",
)

MAX_FILE_BYTES: Final = 4 * 1024 * 1024
"""The largest definition file (funnel, owner rules, pipeline) read: 4 MiB."""

MAX_DEPTH: Final = 32
"""The deepest nesting of tables and arrays a definition document may have."""

_INT_DIGITS: Final = re.compile(r"Exceeds the limit \((\d+) digits\)")


# ---------------------------------------------------------------- public functions


def loads_funnel(text: str, *, format: FileFormat) -> Funnel:
    """Build a funnel from the text of a funnel document.

    Args:
        text: The document, in TOML or JSON.
        format: ``"toml"`` or ``"json"``.

    Raises:
        FunnelFormatError: The text is not valid TOML / JSON, or breaks the
            schema; the message lists every problem with its location.
        InvalidFunnel: The document describes a funnel with problems.
    """
    fmt = _funnel_call(_check_format, format, "<string>")
    return _funnel_from(text, fmt, "<string>")


def load_funnel(path: str | os.PathLike[str]) -> Funnel:
    """Read a funnel file; the suffix (``.toml`` or ``.json``) gives the format.

    Args:
        path: The file to read.

    Raises:
        FunnelFormatError: The suffix is neither ``.toml`` nor ``.json``, the
            file is not UTF-8, or the document is malformed (see
            :func:`loads_funnel`).
        InvalidFunnel: The document describes a funnel with problems.
        OSError: The file cannot be read.
    """
    source = os.fspath(path)
    fmt = _funnel_call(_format_for, source, source)
    text = _funnel_call(_read_text, source, source)
    return _funnel_from(text, fmt, source)


def dumps_funnel(funnel: Funnel, *, format: FileFormat) -> str:
    """Return the funnel as the text of a funnel document, in canonical form.

    Args:
        funnel: The funnel to write.
        format: ``"toml"`` or ``"json"``.

    Raises:
        FunnelFormatError: *format* is unknown, or (TOML only) a string
            contains a lone surrogate or an integer does not fit 64 bits,
            which TOML cannot represent; JSON can.
    """
    source = f"funnel {funnel.name!r}"
    fmt = _funnel_call(_check_format, format, "<string>")
    document = _to_document(funnel)
    if fmt == "json":
        return _json_text(document)
    return _funnel_call(_funnel_toml, document, source)


def dump_funnel(funnel: Funnel, path: str | os.PathLike[str]) -> None:
    """Write the funnel to a file; the suffix (``.toml`` or ``.json``) gives the format.

    The file is UTF-8 with Unix line endings and is replaced if it exists.

    Args:
        funnel: The funnel to write.
        path: The file to write.

    Raises:
        FunnelFormatError: The suffix is neither ``.toml`` nor ``.json``, or
            see :func:`dumps_funnel`. Nothing is written then.
        OSError: The file cannot be written.
    """
    target = os.fspath(path)
    text = dumps_funnel(funnel, format=_funnel_call(_format_for, target, target))
    _write_text(target, text)


def load_owner_rules(path: str | os.PathLike[str], funnel: Funnel) -> OwnerRules:
    """Read owner rules for *funnel* from a ``.toml`` or ``.json`` file, validated.

    Stages the file's ``defaults`` do not list keep the funnel's stage owner;
    the funnel's teams are known without listing them. See
    :meth:`~buyerjourney.OwnerRules.from_dict` for the schema.

    Args:
        path: The file to read.
        funnel: The funnel the rules are for.

    Returns:
        The rules, checked against *funnel*.

    Raises:
        InvalidOwnerRules: The file cannot be parsed, or has problems. Every
            problem is listed, those of the document's shape and those of
            the rules alike; each message starts with the file name and the
            location inside it, and each problem's ``subject`` is that
            location (for ``no-owner``, the stage).
        OSError: The file cannot be read.
    """
    return _load_owner_rules(path, funnel, validate=True)


def load_unchecked_owner_rules(path: str | os.PathLike[str], funnel: Funnel) -> OwnerRules:
    """Read owner rules for *funnel* from a file **without** checking them against it.

    :func:`load_owner_rules` refuses rules with a gap or a shadowed
    override; this reads them anyway (the file must still follow the
    schema), so that a verifier can report each problem together with
    everything else. Stages the file does not list keep the funnel's stage
    owner, as with :func:`load_owner_rules`.

    Args:
        path: A ``.toml`` or ``.json`` owner rules file.
        funnel: The funnel the rules are for.

    Returns:
        The rules, possibly with problems (see
        :meth:`~buyerjourney.OwnerRules.problems`).

    Raises:
        InvalidOwnerRules: The file is not valid TOML or JSON, or does not
            follow the schema; each message starts with the file name.
        OSError: The file cannot be read.
    """
    return _load_owner_rules(path, funnel, validate=False)


def save_owner_rules(
    rules: OwnerRules, path: str | os.PathLike[str], *, funnel: Funnel | None = None
) -> None:
    """Write *rules* to a ``.toml`` or ``.json`` file that :func:`load_owner_rules` reads.

    With *funnel*, the file holds what the rules add to the funnel, as a
    hand-written file does: ``defaults`` lists only the stages whose owner
    differs from the funnel's stage owner, and ``teams`` only the teams
    neither built in nor named by the funnel. A stage left out takes the
    funnel's owner when the file is loaded, so a later change of the
    funnel's owners is not undone by an old file; loading the file with the
    same funnel gives back equal rules. Without *funnel*, every default and
    team is written out (see :meth:`~buyerjourney.OwnerRules.to_dict`), and
    the file pins each stage's owner whatever the funnel says later.

    The file is UTF-8 with Unix line endings and is replaced if it exists.

    Args:
        rules: The rules to save.
        path: The file to write; its suffix picks the format.
        funnel: The funnel the rules are for, whose stage owners and teams
            the file then leaves out.

    Raises:
        InvalidOwnerRules: The suffix is neither ``.toml`` nor ``.json``, or
            a value cannot be written as TOML (an integer beyond 64 bits, a
            lone surrogate). Nothing is written then.
        OSError: The file cannot be written.
    """
    target = os.fspath(path)
    fmt = _owners_call(_format_for, target, target)
    document = rules.to_dict() if funnel is None else _owner_document(rules, funnel)
    text = _json_text(document) if fmt == "json" else _owners_call(_toml_text, document, target)
    _write_text(target, text)


def _owner_document(rules: OwnerRules, funnel: Funnel) -> dict[str, Any]:
    """*rules* as the file schema, without what *funnel* already gives."""
    document = rules.to_dict()
    own = {s.name: s.owner for s in funnel.stages if s.owner is not None}
    document["defaults"] = {
        stage: team for stage, team in rules.defaults.items() if own.get(stage) != team
    }
    known = {*BUILTIN_TEAMS, *own.values()}
    document["teams"] = [team for team in rules.teams if team not in known]
    return document


# ---------------------------------------------------------------- reading and writing text


class _DocumentError(Exception):
    """What is wrong with a file or a document, before it is any kind's error."""

    def __init__(self, message: str, location: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.location = location


_A = TypeVar("_A")
_R = TypeVar("_R")


def _funnel_call(fn: Callable[[_A], _R], arg: _A, source: str) -> _R:
    """``fn(arg)``, a :class:`_DocumentError` raised as :class:`FunnelFormatError`."""
    try:
        return fn(arg)
    except _DocumentError as exc:
        raise FunnelFormatError(exc.message, source=source, location=exc.location) from None


def _owners_call(fn: Callable[[_A], _R], arg: _A, source: str) -> _R:
    """``fn(arg)``, a :class:`_DocumentError` raised as :class:`InvalidOwnerRules`."""
    try:
        return fn(arg)
    except _DocumentError as exc:
        where = f"{exc.location}: " if exc.location else ""
        problem = Problem("format-error", f"{source}: {where}{exc.message}", exc.location)
        raise invalid_owner_rules([problem]) from None


def _check_format(value: object) -> FileFormat:
    if value == "toml":
        return "toml"
    if value == "json":
        return "json"
    raise _DocumentError(f"unknown format {value!r}; expected 'toml' or 'json'")


def _format_for(source: str) -> FileFormat:
    suffix = Path(source).suffix
    try:
        return _SUFFIXES[suffix.lower()]
    except KeyError:
        got = f"suffix {suffix!r}" if suffix else "no suffix"
        msg = (
            f"cannot tell the format from the file name ({got}); name the file with .toml or .json"
        )
        raise _DocumentError(msg) from None


def _read_text(source: str) -> str:
    """The text of a UTF-8 file of at most :data:`MAX_FILE_BYTES` (a byte order mark is dropped).

    At most one byte more than the bound is read, so that a huge file, or a
    device that never ends (``/dev/zero``), is refused without filling memory.
    """
    with open(source, "rb") as file:
        data = file.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        msg = (
            f"the file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB "
            f"({MAX_FILE_BYTES} bytes), the most a definition file may hold; "
            "is it the right file?"
        )
        raise _DocumentError(msg)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        msg = f"the file is not UTF-8 text ({exc.reason} at byte {exc.start})"
        raise _DocumentError(msg) from None


def _write_text(target: str, text: str) -> None:
    with open(target, "w", encoding="utf-8", newline="\n") as file:
        file.write(text)


_TOO_DEEP: Final = (
    f"the document is nested more than {MAX_DEPTH} levels deep (tables and arrays "
    "inside each other); a definition file needs a handful"
)


def _decode(text: str, fmt: FileFormat) -> Any:
    """The document *text* holds; JSON objects remember their duplicate keys.

    A leading byte order mark is dropped. Whatever the text, this raises
    nothing but :class:`_DocumentError`: a document nested too deeply, or
    holding an integer too long to convert, is refused with a message.
    """
    if not isinstance(text, str):
        raise _DocumentError(f"expected the document as a str (got a {type(text).__name__})")
    text = text.removeprefix("\ufeff")
    name = "TOML" if fmt == "toml" else "JSON"
    try:
        if fmt == "toml":
            data = tomllib.loads(text)
        else:
            data = json.loads(text, object_pairs_hook=_json_object)
    except json.JSONDecodeError as exc:
        msg = f"not valid JSON: {exc.msg} (at line {exc.lineno}, column {exc.colno})"
        raise _DocumentError(msg) from None
    except RecursionError:
        raise _DocumentError(_TOO_DEEP) from None
    except ValueError as exc:
        raise _DocumentError(f"not valid {name}: {_parse_problem(exc)}") from None
    _check_depth(data)
    return data


def _parse_problem(exc: ValueError) -> str:
    """What the parser's *exc* says, without advice meant for Python programmers."""
    digits = _INT_DIGITS.search(str(exc))
    if digits is not None:
        return (
            f"an integer has more than {digits[1]} digits; no rank, count or score needs that many"
        )
    if "recursion" in str(exc):
        return _TOO_DEEP
    return str(exc)


def _check_depth(data: object) -> None:
    """Refuse a document nested more than :data:`MAX_DEPTH` levels (checked without recursion)."""
    level: list[object] = [data]
    for _ in range(MAX_DEPTH + 1):
        below: list[object] = []
        for value in level:
            if isinstance(value, dict):
                below.extend(value.values())
            elif isinstance(value, list):
                below.extend(value)
        if not below:
            return
        level = below
    raise _DocumentError(_TOO_DEEP)


def _json_text(document: Mapping[str, Any]) -> str:
    """*document* as indented JSON; non-ASCII escaped only if it holds a lone surrogate."""
    text = json.dumps(document, ensure_ascii=False, indent=2)
    if _has_surrogate(text):
        text = json.dumps(document, ensure_ascii=True, indent=2)
    return text + "\n"


def _toml_text(document: Mapping[str, Any]) -> str:
    """*document* as TOML, written by tomli-w once TOML's limits are checked."""
    _check_toml(document, "")
    return tomli_w.dumps(document)


def _funnel_toml(document: Mapping[str, Any]) -> str:
    """A funnel document as TOML: its scalars, then one table per stage and transition.

    tomli-w writes every key and value; only the layout is fixed here, so that
    stages always come before transitions, one ``[[stages]]`` table each,
    whatever their length (tomli-w alone inlines short arrays of tables).
    """
    _check_toml(document, "")
    scalars = {k: v for k, v in document.items() if not isinstance(v, list)}
    parts = [tomli_w.dumps(scalars)]
    for key, tables in document.items():
        if isinstance(tables, list):
            for table in tables:
                flat = {k: v for k, v in table.items() if not isinstance(v, dict)}
                parts.append(f"\n[[{key}]]\n" + tomli_w.dumps(flat))
                # a table inside a stage (a working calendar) belongs to that stage
                parts.extend(
                    f"\n[{key}.{name}]\n" + tomli_w.dumps(sub)
                    for name, sub in table.items()
                    if isinstance(sub, dict)
                )
    return "".join(parts)


def _check_toml(value: object, location: str) -> None:
    """Refuse what TOML cannot hold: lone surrogates, integers beyond 64 bits."""
    if isinstance(value, str):
        bad = next((c for c in value if "\ud800" <= c <= "\udfff"), None)
        if bad is not None:
            msg = (
                f"contains the lone surrogate U+{ord(bad):04X}, which TOML cannot represent; "
                "write the file as JSON or remove the character"
            )
            raise _DocumentError(msg, location)
    elif isinstance(value, bool):
        return
    elif isinstance(value, int):
        if not _TOML_INT_MIN <= value <= _TOML_INT_MAX:
            msg = f"{value} does not fit TOML's 64-bit integers; save as .json"
            raise _DocumentError(msg, location)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _check_toml(key, location)
            _check_toml(item, _join(location, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_toml(item, _join(location, i))


def _duplicate_keys(value: object, location: str) -> Iterator[tuple[str, str]]:
    """``(location, key)`` for every key a JSON object of *value* had more than once."""
    if isinstance(value, dict):
        for key in getattr(value, "duplicates", ()):
            yield _join(location, key), key
        for key, item in value.items():
            yield from _duplicate_keys(item, _join(location, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _duplicate_keys(item, _join(location, i))


def _load_owner_rules(
    path: str | os.PathLike[str], funnel: Funnel, *, validate: bool
) -> OwnerRules:
    source = os.fspath(path)
    fmt = _owners_call(_format_for, source, source)
    text = _owners_call(_read_text, source, source)
    data = _owners_call(lambda t: _decode(t, fmt), text, source)
    problems = [
        Problem("duplicate-key", f"{location}: appears more than once; keep one", location)
        for location, _ in _duplicate_keys(data, "")
    ]
    rules, found = read_owner_rules(data, funnel, validate=validate)
    problems += found
    if rules is None or problems:
        raise invalid_owner_rules(
            Problem(p.code, f"{source}: {p.message}", p.subject) for p in problems
        )
    return rules


# ---------------------------------------------------------------- durations

_DURATION = re.compile(
    r"P(?!\Z)(?:(?P<days>[0-9]+)D)?"
    r"(?:T(?=[0-9])(?:(?P<hours>[0-9]+)H)?(?:(?P<minutes>[0-9]+)M)?"
    r"(?:(?P<seconds>[0-9]+)(?:[.,](?P<fraction>[0-9]+))?S)?)?",
    re.ASCII,
)
_DURATION_EXAMPLES: Final = 'such as "PT72H", "P2DT4H30M" or "PT0.5S"'
_DURATION_DIGITS: Final = 18
"""More digits than this in one part of a duration cannot be a duration Python can hold."""


def _format_duration(value: timedelta) -> str:
    """Write a positive timedelta as ``PnDTnHnMnS``, leaving out zero parts."""
    hours, rest = divmod(value.seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    date_part = f"{value.days}D" if value.days else ""
    time_part = f"{hours}H" if hours else ""
    time_part += f"{minutes}M" if minutes else ""
    if seconds or value.microseconds:
        fraction = f".{value.microseconds:06d}".rstrip("0") if value.microseconds else ""
        time_part += f"{seconds}{fraction}S"
    return f"P{date_part}T{time_part}" if time_part else f"P{date_part}"


def _parse_duration(text: str) -> timedelta | str:
    """Return the duration *text* means, or a message saying what is wrong with it."""
    match = _DURATION.fullmatch(text)
    if match is None:
        hint = ""
        date_part = text.partition("T")[0]
        if text.startswith("P") and any(c in date_part for c in "YMW"):
            hint = '; years, months and weeks are not accepted, write days instead ("P30D")'
        elif text[:1] in ("-", "+"):
            hint = "; a duration cannot be signed"
        return (
            f"must be an ISO-8601 duration of days, hours, minutes and seconds "
            f"{_DURATION_EXAMPLES} (got {_show(text)}){hint}"
        )
    fraction = (match["fraction"] or "").rstrip("0")
    parts = (match[key] or "" for key in ("days", "hours", "minutes", "seconds"))
    if any(len(part.lstrip("0")) > _DURATION_DIGITS for part in parts):
        return f"is too long to be a duration (got {_show(text)})"
    if len(fraction) > 6:
        return f"must not be more precise than a microsecond (got {_show(text)})"
    try:
        duration = timedelta(
            days=int(match["days"] or 0),
            hours=int(match["hours"] or 0),
            minutes=int(match["minutes"] or 0),
            seconds=int(match["seconds"] or 0),
            microseconds=int(fraction.ljust(6, "0")),
        )
    except (OverflowError, ValueError):
        return f"is too long to be a duration (got {_show(text)})"
    if duration <= timedelta(0):
        return f"must be longer than zero (got {_show(text)}); leave 'sla' out for no SLA"
    return duration


# ---------------------------------------------------------------- reading


class _JsonObject(dict[str, Any]):
    """A JSON object that remembers the keys it had more than once."""

    duplicates: tuple[str, ...] = ()


def _json_object(pairs: list[tuple[str, Any]]) -> _JsonObject:
    obj = _JsonObject(pairs)
    if len(obj) < len(pairs):
        seen: set[str] = set()
        duplicates: dict[str, None] = {}
        for key, _ in pairs:
            if key in seen:
                duplicates[key] = None
            seen.add(key)
        obj.duplicates = tuple(duplicates)
    return obj


def _funnel_from(text: str, fmt: FileFormat, source: str) -> Funnel:
    data = _funnel_call(lambda t: _decode(t, fmt), text, source)
    reader = _Reader(fmt)
    build = _read_document(reader, data)
    if reader.issues:
        _raise_issues(reader.issues, source)
    return build()


def _raise_issues(
    issues: list[tuple[str, str]],
    source: str,
    *,
    error: type[FunnelFormatError] = FunnelFormatError,
    document: str = "funnel document",
) -> NoReturn:
    if len(issues) == 1:
        location, message = issues[0]
        raise error(message, source=source, location=location)
    lines = "\n".join(f"  - {loc}: {msg}" if loc else f"  - {msg}" for loc, msg in issues)
    raise error(
        f"{len(issues)} problems in the {document}:\n{lines}\n"
        "Fix each one and load the document again.",
        source=source,
    )


_E = TypeVar("_E", bound=enum.Enum)


def _join(location: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{location}[{key}]"
    return f"{location}.{key}" if location else key


def _is_days(value: object) -> bool:
    return isinstance(value, list) and all(_is_int(d) and 0 <= d <= 6 for d in value)


def _is_clock(value: object) -> bool:
    if isinstance(value, time) and value.tzinfo is None:
        return True
    if not isinstance(value, str):
        return False
    try:
        time.fromisoformat(value)
    except ValueError:
        return False
    return True


def _clock(value: time | str) -> time:
    return value if isinstance(value, time) else time.fromisoformat(value)


def _is_dates(value: object) -> bool:
    if not isinstance(value, list):
        return False
    for item in value:
        if isinstance(item, datetime) or not isinstance(item, (date, str)):
            return False
        if isinstance(item, str):
            try:
                date.fromisoformat(item)
            except ValueError:
                return False
    return True


def _day(value: date | str) -> date:
    return value if isinstance(value, date) else date.fromisoformat(value)


def _calendar_document(calendar: WorkingCalendar) -> dict[str, Any]:
    out: dict[str, Any] = {"timezone": calendar.timezone, "days": list(calendar.days)}
    out["start"] = calendar.start.isoformat(timespec="minutes")
    out["end"] = calendar.end.isoformat(timespec="minutes")
    if calendar.holidays:
        out["holidays"] = [d.isoformat() for d in sorted(calendar.holidays)]
    return out


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_str(value: object) -> bool:
    return isinstance(value, str)


def _is_bool(value: object) -> bool:
    return isinstance(value, bool)


def _show(value: object) -> str:
    """*value* as the document would spell it (shortened), for messages."""
    if isinstance(value, (datetime, date, time)):
        text = value.isoformat()
    else:
        try:
            text = json.dumps(value, ensure_ascii=False)
        except (TypeError, ValueError):
            text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _show_all(values: Iterable[str]) -> str:
    return ", ".join(map(_show, values))


class _Reader:
    """Checks a parsed document against the schema, collecting every problem.

    Each reading method returns the value found (or ``None`` when it is
    absent or wrong) and records what is wrong in :attr:`issues` as
    ``(location, message)`` pairs.
    """

    def __init__(self, fmt: FileFormat) -> None:
        self.fmt = fmt
        self.table_word = "table" if fmt == "toml" else "object"
        self.issues: list[tuple[str, str]] = []

    def report(self, location: str, message: str) -> None:
        self.issues.append((location, message))

    def kind_of(self, value: object) -> str:
        """The document's word for the type of *value*, with an article."""
        if isinstance(value, bool):
            return "a boolean"
        if isinstance(value, int):
            return "an integer"
        if isinstance(value, float):
            return "a float" if self.fmt == "toml" else "a number"
        if isinstance(value, str):
            return "a string"
        if isinstance(value, dict):
            return f"a {self.table_word}" if self.fmt == "toml" else "an object"
        if isinstance(value, list):
            return "an array"
        if value is None:
            return "null"
        if isinstance(value, datetime):
            return "a date-time"
        if isinstance(value, date):
            return "a date"
        if isinstance(value, time):
            return "a time"
        return f"a {type(value).__name__}"

    def got(self, value: object) -> str:
        return f"got {_show(value)} that is {self.kind_of(value)}"

    def table(
        self, value: object, location: str, keys: tuple[str, ...], what: str
    ) -> Mapping[str, Any] | None:
        """Check that *value* is a table whose keys are all among *keys*."""
        if not isinstance(value, dict):
            article = "an" if self.table_word == "object" else "a"
            self.report(location, f"{what} must be {article} {self.table_word} ({self.got(value)})")
            return None
        for key in getattr(value, "duplicates", ()):
            self.report(_join(location, key), "appears more than once; keep one")
        for key in value:
            if key not in keys:
                close = difflib.get_close_matches(str(key), keys, n=1)
                hint = f"; did you mean {_show(close[0])}?" if close else ""
                self.report(
                    _join(location, key),
                    f"unknown key {_show(key)}; {what} has the keys {', '.join(keys)}{hint}",
                )
        return value

    def value(
        self,
        table: Mapping[str, Any],
        location: str,
        key: str,
        expected: str,
        accept: Callable[[object], bool],
        *,
        required: str = "",
        nullable: bool = False,
    ) -> Any:
        """Return ``table[key]`` if it is present and accepted, else ``None``.

        *required*, when given, is the phrase for the owner of the key in the
        "missing" message (``"every stage"``); otherwise the key is optional.
        A *nullable* optional key may be ``null`` in JSON, meaning "not set".
        """
        loc = _join(location, key)
        if key not in table:
            if required:
                self.report(loc, f"missing; {required} needs {key!r}, {expected}")
            return None
        value = table[key]
        if value is None and nullable and self.fmt == "json":
            return None
        if not accept(value):
            self.report(loc, f"must be {expected} ({self.got(value)})")
            return None
        return value

    def choice(
        self, table: Mapping[str, Any], location: str, key: str, cls: type[_E], default: _E
    ) -> _E:
        """Return the enum member named by ``table[key]``, or *default* if it is absent."""
        if key not in table:
            return default
        raw = table[key]
        values = [m.value for m in cls]
        for member in cls:
            if raw == member.value and isinstance(raw, str):
                return member
        close = difflib.get_close_matches(raw, values, n=1) if isinstance(raw, str) else []
        hint = f"; did you mean {_show(close[0])}?" if close else ""
        self.report(
            _join(location, key),
            f"must be one of {_show_all(values)} ({self.got(raw)}){hint}",
        )
        return default

    def calendar(self, table: Mapping[str, Any], location: str, key: str) -> WorkingCalendar | None:
        """The working calendar ``table[key]`` (an inline table), or ``None`` if absent."""
        if key not in table:
            return None
        loc = _join(location, key)
        inner = self.table(table[key], loc, _CALENDAR_KEYS, "a working calendar")
        if inner is None:
            return None
        fields: dict[str, Any] = {}
        zone = self.value(inner, loc, "timezone", "a time zone name like 'Europe/Berlin'", _is_str)
        if zone is not None:
            fields["timezone"] = zone
        days = self.value(
            inner, loc, "days", "an array of weekday numbers, 0 (Monday) to 6", _is_days
        )
        if days is not None:
            fields["days"] = tuple(days)
        for end in ("start", "end"):
            raw = self.value(inner, loc, end, 'a time of day such as "09:00"', _is_clock)
            if raw is not None:
                fields[end] = _clock(raw)
        holidays = self.value(
            inner, loc, "holidays", 'an array of dates such as "2024-12-25"', _is_dates
        )
        if holidays is not None:
            fields["holidays"] = tuple(_day(d) for d in holidays)
        try:
            return WorkingCalendar(**fields)
        except (TypeError, ValueError) as exc:
            self.report(loc, str(exc))
            return None

    def duration(self, table: Mapping[str, Any], location: str, key: str) -> timedelta | None:
        expected = f"an ISO-8601 duration string {_DURATION_EXAMPLES}"
        raw = self.value(table, location, key, expected, _is_str, nullable=True)
        if raw is None:
            return None
        parsed = _parse_duration(raw)
        if isinstance(parsed, str):
            self.report(_join(location, key), parsed)
            return None
        return parsed

    def document(self, data: object, *, require_format: bool = True) -> Callable[[], Funnel]:
        """Check the whole document; return a function that builds the funnel.

        Call the returned function only if :attr:`issues` is empty. Without
        *require_format* (a funnel inside a pipeline document), ``format``
        may be left out.
        """
        top = self.table(data, "", _TOP_KEYS, "a funnel document")
        if top is None:
            return _unreachable
        if require_format or "format" in top:
            self.format_key(top)
        name = self.value(top, "", "name", "a string", _is_str, required="a funnel document")
        description = self.value(top, "", "description", "a string", _is_str)
        acceptance = self.value(
            top,
            "",
            "acceptance",
            '"stage" (accept at gate stages) or "handoff" (accept after every handoff)',
            lambda v: v in ("stage", "handoff"),
        )
        stages = self.array(top, "stages", required=True)
        transitions = self.array(top, "transitions", required=False)
        stage_builders = [self.stage(item, _join("stages", i)) for i, item in enumerate(stages)]
        transition_builders = [
            self.transition(item, _join("transitions", i)) for i, item in enumerate(transitions)
        ]

        def build() -> Funnel:
            return Funnel(
                name,
                [b() for b in stage_builders],
                [b() for b in transition_builders],
                description or "",
                acceptance=acceptance or "stage",
            )

        return build

    def format_key(
        self,
        top: Mapping[str, Any],
        schema: str = SCHEMA,
        family: str = _SCHEMA_FAMILY,
        location: str = "",
    ) -> None:
        loc = _join(location, "format")
        if "format" not in top:
            example = (
                f"format = {json.dumps(schema)}"
                if self.fmt == "toml"
                else f'"format": {json.dumps(schema)}'
            )
            self.report(loc, f"missing; start the document with {example}")
            return
        value = top["format"]
        if value == schema:
            return
        if isinstance(value, str) and value.startswith(family):
            self.issues.clear()
            self.report(
                loc,
                f"unsupported format version {_show(value)}; this version of buyerjourney "
                f"reads {_show(schema)}. Upgrade buyerjourney, or write the file again "
                "with the version that reads it",
            )
            raise _StopReading
        self.report(loc, f"must be {_show(schema)} ({self.got(value)})")

    def array(self, top: Mapping[str, Any], key: str, *, required: bool) -> list[Any]:
        if key not in top:
            if required:
                self.report(
                    key,
                    f"missing; a funnel document needs {key!r}, an array of {self.table_word}s",
                )
            return []
        value = top[key]
        if not isinstance(value, list):
            header = f" ([[{key}]])" if self.fmt == "toml" else ""
            self.report(key, f"must be an array of {self.table_word}s{header} ({self.got(value)})")
            return []
        return value

    def stage(self, item: object, location: str) -> Callable[[], Stage]:
        table = self.table(item, location, _STAGE_KEYS, "a stage")
        if table is None:
            return _unreachable
        every = "every stage"
        name = self.value(table, location, "name", "a string", _is_str, required=every)
        rank = self.value(table, location, "rank", "an integer such as 10", _is_int, required=every)
        kind = self.choice(table, location, "kind", StageKind, StageKind.OPEN)
        owner = self.value(table, location, "owner", "a string", _is_str, nullable=True)
        flags = {
            key: self.value(table, location, key, "true or false", _is_bool)
            for key in ("initial", "terminal", "gate")
        }
        sla = self.duration(table, location, "sla")
        accept_sla = self.duration(table, location, "accept_sla")
        sla_calendar = self.calendar(table, location, "sla_calendar")
        accept_calendar = self.calendar(table, location, "accept_calendar")
        description = self.value(table, location, "description", "a string", _is_str)

        def build() -> Stage:
            terminal = flags["terminal"]
            return Stage(
                name,
                rank,
                kind,
                sla=sla,
                description=description or "",
                owner=owner,
                initial=bool(flags["initial"]),
                terminal=kind.is_exit if terminal is None else terminal,
                gate=bool(flags["gate"]),
                accept_sla=accept_sla,
                sla_calendar=sla_calendar,
                accept_calendar=accept_calendar,
            )

        return build

    def transition(self, item: object, location: str) -> Callable[[], Transition]:
        table = self.table(item, location, _TRANSITION_KEYS, "a transition")
        if table is None:
            return _unreachable
        every = "every transition"
        event = self.value(table, location, "event", "a string", _is_str, required=every)
        source = self.value(
            table, location, "source", "a string naming a stage", _is_str, required=every
        )
        target = self.value(
            table, location, "target", "a string naming a stage", _is_str, required=every
        )
        direction = self.choice(table, location, "direction", Direction, Direction.FORWARD)
        guard = self.value(
            table, location, "guard", "a string naming a guard", _is_str, nullable=True
        )
        bypasses_gate = self.value(table, location, "bypasses_gate", "true or false", _is_bool)
        description = self.value(table, location, "description", "a string", _is_str)

        def build() -> Transition:
            return Transition(
                event,
                source,
                target,
                direction,
                guard,
                description or "",
                bypasses_gate=bool(bypasses_gate),
            )

        return build


class _StopReading(Exception):
    """Raised inside :class:`_Reader` when further checks would only add noise."""


def _unreachable() -> Any:
    msg = "a document with problems was built; report this as a bug in buyerjourney"
    raise AssertionError(msg)


def _read_document(
    reader: _Reader, data: object, *, require_format: bool = True
) -> Callable[[], Funnel]:
    try:
        return reader.document(data, require_format=require_format)
    except _StopReading:
        return _unreachable


# ---------------------------------------------------------------- writing


def _to_document(funnel: Funnel) -> dict[str, Any]:
    """The funnel as plain data in canonical order, with default values left out."""
    document: dict[str, Any] = {"format": SCHEMA, "name": funnel.name}
    if funnel.description:
        document["description"] = funnel.description
    if funnel.acceptance != "stage":
        document["acceptance"] = funnel.acceptance
    document["stages"] = [_stage_document(s) for s in funnel.stages]
    if funnel.transitions:
        document["transitions"] = [_transition_document(t) for t in funnel.transitions]
    return document


def _stage_document(stage: Stage) -> dict[str, Any]:
    out: dict[str, Any] = {"name": stage.name, "rank": stage.rank}
    if stage.kind is not StageKind.OPEN:
        out["kind"] = stage.kind.value
    if stage.owner is not None:
        out["owner"] = stage.owner
    if stage.initial:
        out["initial"] = True
    if stage.terminal != stage.kind.is_exit:
        out["terminal"] = stage.terminal
    if stage.gate:
        out["gate"] = True
    if stage.sla is not None:
        out["sla"] = _format_duration(stage.sla)
    if stage.sla_calendar is not None:
        out["sla_calendar"] = _calendar_document(stage.sla_calendar)
    if stage.accept_sla is not None:
        out["accept_sla"] = _format_duration(stage.accept_sla)
    if stage.accept_calendar is not None:
        out["accept_calendar"] = _calendar_document(stage.accept_calendar)
    if stage.description:
        out["description"] = stage.description
    return out


def _transition_document(transition: Transition) -> dict[str, Any]:
    out: dict[str, Any] = {
        "event": transition.event,
        "source": transition.source,
        "target": transition.target,
    }
    if transition.direction is not Direction.FORWARD:
        out["direction"] = transition.direction.value
    if transition.guard is not None:
        out["guard"] = transition.guard
    if transition.bypasses_gate:
        out["bypasses_gate"] = True
    if transition.description:
        out["description"] = transition.description
    return out


def _has_surrogate(text: str) -> bool:
    return any("\ud800" <= c <= "\udfff" for c in text)


# ---------------------------------------------------------------- pipeline files

PIPELINE_SCHEMA: Final = "buyerjourney.pipeline/1"
"""The value of the ``format`` key of a pipeline file that this version reads."""

_PIPELINE_FAMILY: Final = "buyerjourney.pipeline/"
_PIPELINE_KEYS: Final = (
    "format",
    "description",
    "funnel",
    "owners",
    "scorer",
    "policy",
    "thresholds",
)
_SCORER_TYPES: Final = ("points", "fit", "combined", "plugin", "default", "none")
_POLICY_TYPES: Final = (
    "threshold",
    "touch_kind",
    "matrix",
    "any",
    "all",
    "plugin",
    "default",
    "none",
)
_SCORER_KEYS: Final[Mapping[str, tuple[str, ...]]] = {
    "points": ("type", "rules", "groups", "total_cap", "attribute_rules"),
    "fit": ("type", "criteria"),
    "combined": ("type", "engagement", "fit"),
    "plugin": ("type", "name"),
    "default": ("type",),
    "none": ("type",),
}
_POLICY_KEYS: Final[Mapping[str, tuple[str, ...]]] = {
    "threshold": ("type", "threshold", "event", "stages", "reason"),
    "touch_kind": ("type", "mapping", "stages"),
    "matrix": ("type", "event", "accept", "engagement_bands", "stages"),
    "any": ("type", "policies"),
    "all": ("type", "policies"),
    "plugin": ("type", "name"),
    "default": ("type",),
    "none": ("type",),
}
_RULE_KEYS: Final = ("name", "points", "kind", "where", "repeatable", "group")
_GROUP_KEYS: Final = ("name", "cap", "decay", "window")
_DECAY_KEYS: Final = ("fraction", "every")
_ATTRIBUTE_RULE_KEYS: Final = ("name", "attribute", "values", "points")
_CRITERION_KEYS: Final = ("name", "attribute", "values", "steps")
_MAX_NUMBER: Final = 1e15
_NUMBER: Final = "a finite number such as 10"
_CAP: Final = "a finite number, zero or more, such as 100"


def loads_pipeline(
    text: str,
    *,
    format: FileFormat,
    hooks: Hooks | None = None,
    directory: str | os.PathLike[str] | None = None,
    check_owners: bool = True,
) -> Pipeline:
    """Build a pipeline from the text of a pipeline document.

    Loading never runs code: a guard is a name that *hooks* must register,
    and a custom scorer or policy is the name of an installed entry point
    (``type = "plugin"``), loaded with :func:`buyerjourney.scoring.load_scorer`
    or :func:`buyerjourney.policies.load_policy`.

    Args:
        text: The document, in TOML or JSON.
        format: ``"toml"`` or ``"json"``.
        hooks: The guard hooks the funnel names (default: none; an engine
            built from the pipeline then refuses a funnel with guards).
        directory: Where relative ``funnel`` and ``owners`` paths start
            (default: the current directory).
        check_owners: Whether to refuse owner rules with problems (a gap, an
            unknown team ...). ``False`` keeps them, for a verifier to report.

    Returns:
        The pipeline.

    Raises:
        PipelineFormatError: The text is not valid TOML / JSON, or breaks
            the schema, or names an unknown preset, a file that cannot be
            read, an event or stage the funnel lacks, or a plugin that is not
            installed; the message lists every problem with its location.
        FunnelFormatError: A funnel file it names is malformed.
        InvalidFunnel: The funnel has problems.
        InvalidOwnerRules: The owner rules (inline or in the file named)
            are malformed or, with *check_owners*, have problems.
    """
    source = "<string>"
    fmt = _pipeline_call(_check_format, format, source)
    base = Path(os.fspath(directory)) if directory is not None else Path()
    return _pipeline_from(text, fmt, source, base, hooks, check_owners=check_owners)


def load_pipeline(
    path: str | os.PathLike[str], *, hooks: Hooks | None = None, check_owners: bool = True
) -> Pipeline:
    """Read a pipeline file; the suffix (``.toml`` or ``.json``) gives the format.

    Relative ``funnel`` and ``owners`` paths in the file start at the
    file's own directory. See :func:`loads_pipeline`.

    Args:
        path: The file to read.
        hooks: The guard hooks the funnel names.
        check_owners: Whether to refuse owner rules with problems.

    Returns:
        The pipeline.

    Raises:
        PipelineFormatError: The suffix is neither ``.toml`` nor ``.json``,
            the file is not UTF-8 or is larger than :data:`MAX_FILE_BYTES`,
            or the document is malformed (see :func:`loads_pipeline`).
        FunnelFormatError: A funnel file it names is malformed.
        InvalidFunnel: The funnel has problems.
        InvalidOwnerRules: The owner rules have problems.
        OSError: The file cannot be read.
    """
    source = os.fspath(path)
    fmt = _pipeline_call(_format_for, source, source)
    text = _pipeline_call(_read_text, source, source)
    base = Path(source).parent
    return _pipeline_from(text, fmt, source, base, hooks, check_owners=check_owners)


def _pipeline_call(fn: Callable[[_A], _R], arg: _A, source: str) -> _R:
    """``fn(arg)``, a :class:`_DocumentError` raised as :class:`PipelineFormatError`."""
    try:
        return fn(arg)
    except _DocumentError as exc:
        raise PipelineFormatError(exc.message, source=source, location=exc.location) from None


def _pipeline_from(
    text: str,
    fmt: FileFormat,
    source: str,
    directory: Path,
    hooks: Hooks | None,
    *,
    check_owners: bool,
) -> Pipeline:
    data = _pipeline_call(lambda t: _decode(t, fmt), text, source)
    reader = _PipelineReader(fmt, directory, source)
    try:
        plan = reader.pipeline(data)
    except _StopReading:
        plan = None
    if plan is None:
        reader.raise_issues()
    return plan.build(reader, source, hooks if hooks is not None else Hooks(), check_owners)


def _is_number(value: object) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and abs(value) <= _MAX_NUMBER  # also False for NaN
    )


def _is_cap(value: object) -> bool:
    return _is_number(value) and value >= 0  # type: ignore[operator]


def _is_scalar(value: object) -> bool:
    return isinstance(value, (str, bool)) or _is_number(value)


def _is_name(value: object) -> bool:
    return isinstance(value, str) and bool(value)


_PolicyBuilder = Callable[[Funnel], "Policy | None"]


@attrs.frozen
class _PipelinePlan:
    """What a pipeline document says, checked; :meth:`build` loads the files it names."""

    funnel: Callable[[], Funnel] | None
    funnel_path: Path | None
    owners: Path | Mapping[str, Any] | None
    scorer: Scorer | None
    policy: _PolicyBuilder
    thresholds: tuple[float, ...] | None

    def build(
        self, reader: _PipelineReader, source: str, hooks: Hooks, check_owners: bool
    ) -> Pipeline:
        """Load the funnel, build the policy against it, then load the owner rules.

        The problems of the document found so far are raised together with
        those the funnel reveals (events and stages the policy names), and
        win over an error of the funnel itself.
        """
        if self.funnel is None:
            reader.raise_issues()
        try:
            funnel = self._funnel(self.funnel, source)
        except (BuyerJourneyError, OSError):
            if reader.issues:
                reader.raise_issues()
            raise
        policy = self.policy(funnel)
        if reader.issues:
            reader.raise_issues()
        owners = self._owners(funnel, source, check_owners)
        thresholds = self.thresholds
        if thresholds is None:
            thresholds = tuple(sorted({p.threshold for p in _threshold_parts(policy)}))
        return Pipeline(
            funnel=funnel,
            owners=owners,
            hooks=hooks,
            scorer=self.scorer,
            policy=policy,
            thresholds=thresholds,
        )

    def _funnel(self, build: Callable[[], Funnel], source: str) -> Funnel:
        if self.funnel_path is None:
            return build()
        try:
            return build()
        except OSError as exc:
            raise PipelineFormatError(
                f"cannot read the funnel file {os.fspath(self.funnel_path)!r}: "
                f"{exc.strerror or exc}",
                source=source,
                location="funnel",
            ) from None

    def _owners(self, funnel: Funnel, source: str, check: bool) -> OwnerRules:
        if isinstance(self.owners, Path):
            try:
                return _load_owner_rules(self.owners, funnel, validate=check)
            except OSError as exc:
                raise PipelineFormatError(
                    f"cannot read the owner rules file {os.fspath(self.owners)!r}: "
                    f"{exc.strerror or exc}",
                    source=source,
                    location="owners",
                ) from None
        data = self.owners if self.owners is not None else {}
        problems = [
            Problem("duplicate-key", f"{location}: appears more than once; keep one", location)
            for location, _ in _duplicate_keys(data, "")
        ]
        rules, found = read_owner_rules(data, funnel, validate=check)
        problems += found
        if rules is None or problems:
            where = "owners" if self.owners is not None else "the funnel's stage owners"
            raise invalid_owner_rules(
                Problem(p.code, f"{source}: {where}: {p.message}", p.subject) for p in problems
            )
        return rules


def _threshold_parts(policy: object) -> Iterator[ThresholdPolicy]:
    """The threshold policies in *policy*, through :class:`AnyOf` and :class:`AllOf`."""
    if isinstance(policy, ThresholdPolicy):
        yield policy
    elif isinstance(policy, (AnyOf, AllOf)):
        for part in policy.policies:
            yield from _threshold_parts(part)


class _PipelineReader(_Reader):
    """Checks a pipeline document; the scorer is built here, the policy once the funnel is known."""

    def __init__(self, fmt: FileFormat, directory: Path, source: str) -> None:
        super().__init__(fmt)
        self.directory = directory
        self.source = source

    def raise_issues(self) -> NoReturn:
        _raise_issues(
            self.issues, self.source, error=PipelineFormatError, document="pipeline document"
        )

    # ------------------------------------------------------------ the document

    def pipeline(self, data: object) -> _PipelinePlan | None:
        top = self.table(data, "", _PIPELINE_KEYS, "a pipeline document")
        if top is None:
            return None
        self.format_key(top, PIPELINE_SCHEMA, _PIPELINE_FAMILY)
        self.value(top, "", "description", "a string", _is_str)
        funnel, funnel_path = self.funnel(top)
        owners = self.owners(top)
        scorer = self.scorer(top["scorer"], "scorer") if "scorer" in top else default_scorer()
        policy: _PolicyBuilder = default_policy
        if "policy" in top:
            policy = self.policy(top["policy"], "policy")
        thresholds = None
        if "thresholds" in top:
            thresholds = tuple(
                float(v) for v in self.array_of(top, "", "thresholds", _NUMBER, _is_number)
            )
        return _PipelinePlan(funnel, funnel_path, owners, scorer, policy, thresholds)

    def funnel(self, top: Mapping[str, Any]) -> tuple[Callable[[], Funnel] | None, Path | None]:
        expected = (
            f"a preset name ({', '.join(presets.names())}), the path of a .toml or .json "
            f"funnel file, or a {self.table_word} holding the funnel"
        )
        if "funnel" not in top:
            self.report("funnel", f"missing; a pipeline document needs 'funnel', {expected}")
            return None, None
        value = top["funnel"]
        if isinstance(value, str):
            if value in presets.names():
                return partial(presets.get, value), None
            if Path(value).suffix.lower() in _SUFFIXES:
                path = self.directory / value
                return partial(load_funnel, path), path
            close = difflib.get_close_matches(value, presets.names(), n=1)
            hint = f"; did you mean {_show(close[0])}?" if close else ""
            self.report("funnel", f"must be {expected} (got {_show(value)}){hint}")
            return None, None
        if isinstance(value, dict):
            inner = _Reader(self.fmt)
            build = _read_document(inner, value, require_format=False)
            for location, message in inner.issues:
                self.report(_join("funnel", location) if location else "funnel", message)
            return (None if inner.issues else build), None
        self.report("funnel", f"must be {expected} ({self.got(value)})")
        return None, None

    def owners(self, top: Mapping[str, Any]) -> Path | Mapping[str, Any] | None:
        if "owners" not in top:
            return None
        value = top["owners"]
        if isinstance(value, str) and Path(value).suffix.lower() in _SUFFIXES:
            return self.directory / value
        if isinstance(value, dict):
            return value
        self.report(
            "owners",
            f"must be the path of a .toml or .json owner rules file, or a {self.table_word} "
            f"of owner rules ({self.got(value)})",
        )
        return None

    # ------------------------------------------------------------ shared pieces

    def typed(
        self, value: object, location: str, what: str, types: tuple[str, ...]
    ) -> tuple[str, Mapping[str, Any]] | None:
        """The ``type`` of a scorer or policy table, and the table; ``None`` if wrong."""
        if not isinstance(value, dict):
            article = "an" if self.table_word == "object" else "a"
            self.report(location, f"{what} must be {article} {self.table_word} ({self.got(value)})")
            return None
        kind = value.get("type")
        if kind not in types:
            if "type" not in value:
                self.report(
                    _join(location, "type"),
                    f"missing; {what} needs 'type', one of {_show_all(types)}",
                )
            else:
                close = difflib.get_close_matches(kind, types, n=1) if isinstance(kind, str) else []
                hint = f"; did you mean {_show(close[0])}?" if close else ""
                self.report(
                    _join(location, "type"),
                    f"must be one of {_show_all(types)} ({self.got(kind)}){hint}",
                )
            return None
        return str(kind), value

    def array_of(
        self,
        table: Mapping[str, Any],
        location: str,
        key: str,
        expected: str,
        accept: Callable[[object], bool],
        *,
        required: str = "",
        non_empty: bool = False,
    ) -> list[Any]:
        """The items of the array ``table[key]``, each accepted; problems are reported."""
        loc = _join(location, key)
        if key not in table:
            if required:
                self.report(loc, f"missing; {required} needs {key!r}, an array of {expected}s")
            return []
        value = table[key]
        if not isinstance(value, list):
            self.report(loc, f"must be an array of {expected}s ({self.got(value)})")
            return []
        if non_empty and not value:
            self.report(loc, f"must hold at least one {expected}")
        items = []
        for i, item in enumerate(value):
            if accept(item):
                items.append(item)
            else:
                self.report(_join(loc, i), f"must be {expected} ({self.got(item)})")
        return items

    def tables(
        self, table: Mapping[str, Any], location: str, key: str, keys: tuple[str, ...], what: str
    ) -> list[tuple[str, Mapping[str, Any]]]:
        """The tables of the array ``table[key]``, each with its location."""
        loc = _join(location, key)
        if key not in table:
            return []
        value = table[key]
        if not isinstance(value, list):
            self.report(loc, f"must be an array of {self.table_word}s ({self.got(value)})")
            return []
        out = []
        for i, item in enumerate(value):
            checked = self.table(item, _join(loc, i), keys, what)
            if checked is not None:
                out.append((_join(loc, i), checked))
        return out

    def build(self, location: str, make: Callable[[], _R]) -> _R | None:
        """``make()``, a ``TypeError`` or ``ValueError`` it raises reported at *location*."""
        try:
            return make()
        except (TypeError, ValueError) as exc:
            self.report(location, str(exc))
            return None

    def plugin(
        self, table: Mapping[str, Any], location: str, load: Callable[[str], _R]
    ) -> _R | None:
        name = self.value(
            table,
            location,
            "name",
            "the name of an installed entry point",
            _is_name,
            required="a plugin",
        )
        if name is None:
            return None
        try:
            return load(name)
        except (UnknownHook, HookError) as exc:
            self.report(_join(location, "name"), str(exc))
            return None

    # ------------------------------------------------------------ scorers

    def scorer(self, value: object, location: str) -> Scorer | None:
        typed = self.typed(value, location, "a scorer", _SCORER_TYPES)
        if typed is None:
            return None
        kind, table = typed
        self.table(table, location, _SCORER_KEYS[kind], f"a {kind} scorer")
        if kind == "none":
            return None
        if kind == "default":
            return default_scorer()
        if kind == "plugin":
            return self.plugin(table, location, load_scorer)
        if kind == "fit":
            return self.fit(table, location)
        if kind == "combined":
            parts = {}
            for key in ("engagement", "fit"):
                if key not in table:
                    self.report(
                        _join(location, key), f"missing; a combined scorer needs {key!r}, a scorer"
                    )
                else:
                    parts[key] = self.scorer(table[key], _join(location, key))
            engagement, fit = parts.get("engagement"), parts.get("fit")
            if engagement is None or fit is None:
                return None
            return CombinedScorer(engagement, fit)
        return self.points(table, location)

    def points(self, table: Mapping[str, Any], location: str) -> Scorer | None:
        before = len(self.issues)
        rules = [
            self.points_rule(item, loc)
            for loc, item in self.tables(table, location, "rules", _RULE_KEYS, "a points rule")
        ]
        groups = [
            self.group(item, loc)
            for loc, item in self.tables(table, location, "groups", _GROUP_KEYS, "a score group")
        ]
        attribute_rules = [
            self.attribute_rule(item, loc)
            for loc, item in self.tables(
                table, location, "attribute_rules", _ATTRIBUTE_RULE_KEYS, "an attribute rule"
            )
        ]
        total_cap = self.value(table, location, "total_cap", _CAP, _is_cap)
        if len(self.issues) > before:
            return None
        return self.build(
            location,
            lambda: PointsScorer(
                [r for r in rules if r is not None],
                groups=[g for g in groups if g is not None],
                total_cap=total_cap,
                attribute_rules=[r for r in attribute_rules if r is not None],
            ),
        )

    def points_rule(self, table: Mapping[str, Any], location: str) -> PointsRule | None:
        every = "every points rule"
        name = self.value(table, location, "name", "a string", _is_name, required=every)
        points = self.value(table, location, "points", _NUMBER, _is_number, required=every)
        kind = self.value(table, location, "kind", "a touch kind", _is_name, nullable=True)
        where = self.value(table, location, "where", f"a {self.table_word}", _is_dict)
        repeatable = self.value(table, location, "repeatable", "true or false", _is_bool)
        group = self.value(table, location, "group", "a group name", _is_name)
        for key, item in (where or {}).items():
            if not _is_scalar(item):
                self.report(
                    _join(_join(location, "where"), key),
                    f"must be a string, a number or a boolean ({self.got(item)})",
                )
        if name is None or points is None:
            return None
        return self.build(
            location,
            lambda: PointsRule(
                name,
                points,
                kind=kind,
                where=dict(where or {}),
                repeatable=True if repeatable is None else repeatable,
                group=group or "engagement",
            ),
        )

    def group(self, table: Mapping[str, Any], location: str) -> ScoreGroup | None:
        name = self.value(table, location, "name", "a string", _is_name, required="every group")
        cap = self.value(table, location, "cap", _CAP, _is_cap)
        decay: LinearDecay | TimeWindow | None = None
        if "decay" in table and "window" in table:
            self.report(location, "has both 'decay' and 'window'; a group has one or the other")
        elif "decay" in table:
            decay = self.decay(table["decay"], _join(location, "decay"))
        elif "window" in table:
            within = self.duration(table, location, "window")
            if within is not None:
                decay = TimeWindow(within)
        if name is None:
            return None
        return self.build(location, lambda: ScoreGroup(name, cap, decay))

    def decay(self, value: object, location: str) -> LinearDecay | None:
        table = self.table(value, location, _DECAY_KEYS, "a decay")
        if table is None:
            return None
        every = "a decay"
        fraction = self.value(
            table, location, "fraction", "a number such as 0.5", _is_number, required=every
        )
        period = self.duration(table, location, "every")
        if "every" not in table:
            self.report(
                _join(location, "every"),
                f"missing; a decay needs 'every', a duration {_DURATION_EXAMPLES}",
            )
        if fraction is None or period is None:
            return None
        return self.build(location, lambda: LinearDecay(fraction, period))

    def attribute_rule(self, table: Mapping[str, Any], location: str) -> AttributeRule | None:
        every = "every attribute rule"
        name = self.value(table, location, "name", "a string", _is_name, required=every)
        attribute = self.value(
            table, location, "attribute", "an attribute name", _is_name, required=every
        )
        values = self.values(table, location)
        points = self.value(table, location, "points", _NUMBER, _is_number, required=every)
        if name is None or attribute is None or values is None or points is None:
            return None
        return self.build(location, lambda: AttributeRule(name, attribute, values, points))

    def values(self, table: Mapping[str, Any], location: str) -> tuple[Any, ...] | None:
        before = len(self.issues)
        values = self.array_of(
            table,
            location,
            "values",
            "a string, number or boolean",
            _is_scalar,
            required="it",
            non_empty=True,
        )
        return tuple(values) if len(self.issues) == before else None

    def fit(self, table: Mapping[str, Any], location: str) -> Scorer | None:
        before = len(self.issues)
        criteria = []
        listed = self.tables(table, location, "criteria", _CRITERION_KEYS, "a fit criterion")
        if "criteria" not in table:
            self.report(
                _join(location, "criteria"),
                f"missing; a fit scorer needs 'criteria', an array of {self.table_word}s",
            )
        for loc, item in listed:
            every = "every criterion"
            name = self.value(item, loc, "name", "a string", _is_name, required=every)
            attribute = self.value(
                item, loc, "attribute", "an attribute name", _is_name, required=every
            )
            values = self.values(item, loc)
            steps = self.value(item, loc, "steps", "an integer such as 1", _is_small_int)
            if name is not None and attribute is not None and values is not None:
                criteria.append(
                    self.build(
                        loc,
                        partial(
                            FitCriterion, name, attribute, values, 1 if steps is None else steps
                        ),
                    )
                )
        if len(self.issues) > before:
            return None
        return self.build(location, lambda: FitGrader([c for c in criteria if c is not None]))

    # ------------------------------------------------------------ policies

    def policy(self, value: object, location: str) -> _PolicyBuilder:
        typed = self.typed(value, location, "a policy", _POLICY_TYPES)
        if typed is None:
            return _no_policy
        kind, table = typed
        self.table(table, location, _POLICY_KEYS[kind], f"a {kind} policy")
        if kind == "none":
            return _no_policy
        if kind == "default":
            return default_policy
        if kind == "plugin":
            loaded = self.plugin(table, location, load_policy)
            return lambda _: loaded
        if kind in ("any", "all"):
            parts = [
                self.policy(item, _join(_join(location, "policies"), i))
                for i, item in enumerate(
                    self.array_of(
                        table,
                        location,
                        "policies",
                        f"policy {self.table_word}",
                        _always,
                        required=f"an {kind!r} policy",
                        non_empty=True,
                    )
                )
            ]
            combine = AnyOf if kind == "any" else AllOf

            def composite(funnel: Funnel) -> Policy | None:
                # A part is None when it is "none" or has problems (reported, so raised later).
                built = [b for b in (part(funnel) for part in parts) if b is not None]
                if not built:
                    return None
                return self.build(location, lambda: combine(*built))

            return composite
        if kind == "touch_kind":
            return self.touch_kind(table, location)
        return self.scored(kind, table, location)

    def stages(
        self, table: Mapping[str, Any], location: str, *, required: bool, allowing: bool
    ) -> str | tuple[str, ...] | None:
        """``stages``: an array of stage names, ``"any"`` or (if *allowing*) ``"allowing"``."""
        words = ("any", "allowing") if allowing else ("any",)
        expected = f"an array of stage names, or {_show_all(words)}"
        loc = _join(location, "stages")
        if "stages" not in table:
            if required:
                self.report(
                    loc,
                    f"missing; this policy needs 'stages', {expected}: "
                    '"allowing" is every stage the event is legal from',
                )
            return "any" if not required else None
        value = table["stages"]
        if isinstance(value, str) and value in words:
            return value
        if isinstance(value, list) and value and all(_is_name(v) for v in value):
            return tuple(value)
        self.report(loc, f"must be {expected} ({self.got(value)})")
        return None

    def scored(self, kind: str, table: Mapping[str, Any], location: str) -> _PolicyBuilder:
        every = f"a {kind} policy"
        event = self.value(table, location, "event", "an event name", _is_name, required=every)
        stages = self.stages(table, location, required=True, allowing=True)
        if kind == "threshold":
            threshold = self.value(
                table, location, "threshold", _NUMBER, _is_number, required=every
            )
            reason = self.value(table, location, "reason", "a string", _is_str)
        else:
            accept = self.array_of(
                table,
                location,
                "accept",
                'a matrix cell such as "A1"',
                _is_name,
                required=every,
                non_empty=True,
            )
            bands = self.array_of(
                table, location, "engagement_bands", _NUMBER, _is_number, required=every
            )

        def make(funnel: Funnel) -> Policy | None:
            if event is None or stages is None:
                return None
            self.known_event(funnel, event, _join(location, "event"))
            listed = self.known_stages(funnel, event, stages, _join(location, "stages"))
            if kind == "threshold":
                if threshold is None:
                    return None
                return self.build(
                    location,
                    lambda: ThresholdPolicy(threshold, event, stages=listed, reason=reason or ""),
                )
            return self.build(
                location,
                lambda: MatrixPolicy(event, accept=accept, engagement_bands=bands, stages=listed),
            )

        return make

    def touch_kind(self, table: Mapping[str, Any], location: str) -> _PolicyBuilder:
        loc = _join(location, "mapping")
        expected = f'a {self.table_word} of touch kind to event, or "events"'
        mapping: Mapping[str, Any] | str | None = None
        if "mapping" not in table:
            self.report(loc, f"missing; a touch_kind policy needs 'mapping', {expected}")
        else:
            raw = table["mapping"]
            if raw == "events":
                mapping = "events"
            elif isinstance(raw, dict):
                mapping = raw
                for key, item in raw.items():
                    if not _is_name(item):
                        self.report(_join(loc, key), f"must be an event name ({self.got(item)})")
            else:
                self.report(loc, f"must be {expected} ({self.got(raw)})")
        stages = self.stages(table, location, required=False, allowing=False)

        def make(funnel: Funnel) -> Policy | None:
            if mapping is None or stages is None:
                return None
            if isinstance(mapping, str):  # "events"
                events = {event: event for event in funnel.events}
            else:
                events = {str(k): str(v) for k, v in mapping.items()}
                for key, event in events.items():
                    self.known_event(funnel, event, _join(loc, key))
            listed = self.known_stages(funnel, "", stages, _join(location, "stages"))
            return self.build(location, lambda: TouchKindPolicy(events, stages=listed))

        return make

    def known_event(self, funnel: Funnel, event: str, location: str) -> None:
        if event not in funnel.events:
            close = difflib.get_close_matches(event, funnel.events, n=1)
            hint = f"; did you mean {_show(close[0])}?" if close else ""
            self.report(
                location,
                f"funnel {funnel.name!r} has no event {_show(event)} "
                f"(events: {', '.join(funnel.events)}){hint}",
            )

    def known_stages(
        self, funnel: Funnel, event: str, stages: str | tuple[str, ...], location: str
    ) -> tuple[str, ...]:
        if stages == "any":
            return ANY_STAGE
        if stages == "allowing":
            return stages_allowing(funnel, event) if event in funnel.events else ANY_STAGE
        unknown = [s for s in stages if s not in funnel]
        if unknown:
            self.report(
                location,
                f"funnel {funnel.name!r} has no stage {_show_all(unknown)} "
                f"(stages: {', '.join(funnel.stage_names)})",
            )
        return tuple(stages)


def _is_dict(value: object) -> bool:
    return isinstance(value, dict)


def _is_small_int(value: object) -> bool:
    return _is_int(value) and abs(value) <= 1000  # type: ignore[arg-type]


def _always(_: object) -> bool:
    return True


def _no_policy(_: Funnel) -> Policy | None:
    return None
