"""Definition files: funnels and owner rules as TOML or JSON documents.

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

The schema (``buyerjourney.funnel/1``), in TOML::

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
    name.
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
from pathlib import Path
from typing import Any, Final, Literal, NoReturn, TypeVar

import tomli_w

from buyerjourney._core.funnel import Direction, Funnel, Stage, StageKind, Transition
from buyerjourney._core.owners import OwnerRules, invalid_owner_rules, read_owner_rules
from buyerjourney.errors import FunnelFormatError, Problem

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

__all__ = [
    "SCHEMA",
    "FileFormat",
    "dump_funnel",
    "dumps_funnel",
    "load_funnel",
    "load_owner_rules",
    "load_unchecked_owner_rules",
    "loads_funnel",
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

_TOP_KEYS: Final = ("format", "name", "description", "stages", "transitions")
_STAGE_KEYS: Final = (
    "name",
    "rank",
    "kind",
    "owner",
    "initial",
    "terminal",
    "gate",
    "sla",
    "description",
)
_TRANSITION_KEYS: Final = ("event", "source", "target", "direction", "guard", "description")


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


def save_owner_rules(rules: OwnerRules, path: str | os.PathLike[str]) -> None:
    """Write *rules* to a ``.toml`` or ``.json`` file that :func:`load_owner_rules` reads.

    Every default is written out (see :meth:`~buyerjourney.OwnerRules.to_dict`).
    The file is UTF-8 with Unix line endings and is replaced if it exists.

    Args:
        rules: The rules to save.
        path: The file to write; its suffix picks the format.

    Raises:
        InvalidOwnerRules: The suffix is neither ``.toml`` nor ``.json``, or
            a value cannot be written as TOML (an integer beyond 64 bits, a
            lone surrogate). Nothing is written then.
        OSError: The file cannot be written.
    """
    target = os.fspath(path)
    fmt = _owners_call(_format_for, target, target)
    document = rules.to_dict()
    text = _json_text(document) if fmt == "json" else _owners_call(_toml_text, document, target)
    _write_text(target, text)


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
    """The text of a UTF-8 file (a byte order mark is dropped)."""
    try:
        with open(source, encoding="utf-8-sig") as file:
            return file.read()
    except UnicodeDecodeError as exc:
        msg = f"the file is not UTF-8 text ({exc.reason} at byte {exc.start})"
        raise _DocumentError(msg) from None


def _write_text(target: str, text: str) -> None:
    with open(target, "w", encoding="utf-8", newline="\n") as file:
        file.write(text)


def _decode(text: str, fmt: FileFormat) -> Any:
    """The document *text* holds; JSON objects remember their duplicate keys."""
    if not isinstance(text, str):
        raise _DocumentError(f"expected the document as a str (got a {type(text).__name__})")
    if fmt == "toml":
        try:
            return tomllib.loads(text)
        except ValueError as exc:
            raise _DocumentError(f"not valid TOML: {exc}") from None
    try:
        return json.loads(text, object_pairs_hook=_json_object)
    except json.JSONDecodeError as exc:
        msg = f"not valid JSON: {exc.msg} (at line {exc.lineno}, column {exc.colno})"
        raise _DocumentError(msg) from None
    except (ValueError, RecursionError) as exc:
        raise _DocumentError(f"not valid JSON: {exc}") from None


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
            parts.extend(f"\n[[{key}]]\n" + tomli_w.dumps(table) for table in tables)
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
    except OverflowError:
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


def _raise_issues(issues: list[tuple[str, str]], source: str) -> NoReturn:
    if len(issues) == 1:
        location, message = issues[0]
        raise FunnelFormatError(message, source=source, location=location)
    lines = "\n".join(f"  - {loc}: {msg}" if loc else f"  - {msg}" for loc, msg in issues)
    raise FunnelFormatError(
        f"{len(issues)} problems in the funnel document:\n{lines}\n"
        "Fix each one and load the document again.",
        source=source,
    )


_E = TypeVar("_E", bound=enum.Enum)


def _join(location: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{location}[{key}]"
    return f"{location}.{key}" if location else key


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

    def document(self, data: object) -> Callable[[], Funnel]:
        """Check the whole document; return a function that builds the funnel.

        Call the returned function only if :attr:`issues` is empty.
        """
        top = self.table(data, "", _TOP_KEYS, "a funnel document")
        if top is None:
            return _unreachable
        self.format_key(top)
        name = self.value(top, "", "name", "a string", _is_str, required="a funnel document")
        description = self.value(top, "", "description", "a string", _is_str)
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
            )

        return build

    def format_key(self, top: Mapping[str, Any]) -> None:
        if "format" not in top:
            example = (
                f"format = {json.dumps(SCHEMA)}"
                if self.fmt == "toml"
                else f'"format": {json.dumps(SCHEMA)}'
            )
            self.report("format", f"missing; start the document with {example}")
            return
        value = top["format"]
        if value == SCHEMA:
            return
        if isinstance(value, str) and value.startswith(_SCHEMA_FAMILY):
            self.issues.clear()
            self.report(
                "format",
                f"unsupported format version {_show(value)}; this version of buyerjourney "
                f"reads {_show(SCHEMA)}. Upgrade buyerjourney, or write the file again "
                "with the version that reads it",
            )
            raise _StopReading
        self.report("format", f"must be {_show(SCHEMA)} ({self.got(value)})")

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
        description = self.value(table, location, "description", "a string", _is_str)

        def build() -> Transition:
            return Transition(event, source, target, direction, guard, description or "")

        return build


class _StopReading(Exception):
    """Raised inside :class:`_Reader` when further checks would only add noise."""


def _unreachable() -> Any:
    msg = "a document with problems was built; report this as a bug in buyerjourney"
    raise AssertionError(msg)


def _read_document(reader: _Reader, data: object) -> Callable[[], Funnel]:
    try:
        return reader.document(data)
    except _StopReading:
        return _unreachable


# ---------------------------------------------------------------- writing


def _to_document(funnel: Funnel) -> dict[str, Any]:
    """The funnel as plain data in canonical order, with default values left out."""
    document: dict[str, Any] = {"format": SCHEMA, "name": funnel.name}
    if funnel.description:
        document["description"] = funnel.description
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
    if transition.description:
        out["description"] = transition.description
    return out


def _has_surrogate(text: str) -> bool:
    return any("\ud800" <= c <= "\udfff" for c in text)
