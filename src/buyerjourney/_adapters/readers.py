"""Reading touches and actions from files: JSON Lines, CSV, Parquet and CRM stage history.

:func:`read` turns a file into ``(Location, item)`` pairs where the item is a
:class:`~buyerjourney.Touch`, an :class:`~buyerjourney.Action` or a
:class:`Rejected` record: bad input never raises out of the reader and never
costs the good records around it. Only a source that cannot be read at all
(missing, a directory, a FIFO or device, not Parquet, a header without the
mapped columns) raises, with :class:`UnreadableSource` or
:class:`InvalidMapping`.

:class:`Columns` maps the columns of tabular input (and the keys of JSON
Lines that do not use the stream format) onto a touch.
:func:`read_stage_history` reads the shape CRM exports have (one row per
lead, stage and date, or one row per lead with a date column per stage) as
override actions, and :func:`in_time_order` puts such unordered input in
time order with a bounded buffer.

Every limit is a named constant of this module, documented where defined.
"""

from __future__ import annotations

import csv
import hashlib
import heapq
import importlib
import itertools
import json
import math
import os
import stat
import sys
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import IO, Any, Final, Literal, TypeAlias
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs

from buyerjourney._core.funnel import Funnel
from buyerjourney._core.owners import OwnerRules
from buyerjourney._core.records import SYSTEM, Action, Actor, Touch
from buyerjourney.errors import BuyerJourneyError, InvalidTouch, MissingExtra

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

__all__ = [
    "DEFAULT_IMPORTER",
    "FORMATS",
    "MAX_CSV_RECORD_LINES",
    "MAX_DEPTH",
    "MAX_INT_DIGITS",
    "MAX_RECORD_BYTES",
    "MAX_TEXT_CHARS",
    "ORDER_LIMIT",
    "PARQUET_BATCH_ROWS",
    "REJECT_CODES",
    "Columns",
    "Constant",
    "InvalidMapping",
    "Location",
    "Rejected",
    "StageColumns",
    "UnreadableSource",
    "ValueMap",
    "importer_rules",
    "in_time_order",
    "load_stage_columns",
    "read",
    "read_stage_history",
    "stage_columns_from_dict",
]

# ---------------------------------------------------------------- limits

MAX_RECORD_BYTES: Final = 1_000_000
"""The largest record, in bytes of its encoded text: one JSON line or one CSV row.

A longer line is rejected (``too-large``) and skipped up to its end without
ever being held in memory whole, so even a file with no line break at all is
read in bounded memory.
"""

MAX_DEPTH: Final = 64
"""The deepest nesting of ``[`` and ``{`` a JSON line may have (the top object is depth 1)."""

MAX_INT_DIGITS: Final = 300
"""The most digits an integer in the input may have (a float holds about 1e308 at most)."""

MAX_CSV_RECORD_LINES: Final = 100
"""The most physical lines one CSV record may span (quoted fields may hold line breaks).

An opening quote that is not closed within this many lines (or before the
end of the file) rejects only the line it is on (``csv``); the lines after
it are read again as records of their own.
"""

PARQUET_BATCH_ROWS: Final = 10_000
"""How many Parquet rows are converted at a time (memory stays bounded by one batch)."""

MAX_TEXT_CHARS: Final = 200
"""How much of a rejected record's raw text :attr:`Rejected.text` keeps."""

ORDER_LIMIT: Final = 1_000_000
"""The default buffer of :func:`in_time_order`, in items."""

DEFAULT_IMPORTER: Final = Actor("crm-import")
"""The actor of stage-history overrides unless another is given (see :func:`importer_rules`)."""

Format = Literal["jsonl", "csv", "parquet"]
FORMATS: Final[Mapping[str, Format]] = MappingProxyType(
    {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}
)
"""The file suffixes :func:`read` recognises, and the format each means.

``.json`` is not guessed: such a file is often one JSON document rather than
JSON Lines; pass ``format="jsonl"`` when it is JSON Lines.
"""

REJECT_CODES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "encoding": "the bytes are not text: invalid UTF-8, a NUL character, or a lone "
        "surrogate (such as the JSON escape \\ud800)",
        "json": "the line is not a JSON object",
        "duplicate-key": "a JSON object names the same key twice",
        "too-deep": f"a JSON line nests more than {MAX_DEPTH} brackets deep",
        "too-large": f"a record is longer than {MAX_RECORD_BYTES:,} bytes",
        "number": f"NaN, Infinity, a float out of range, an integer of more than "
        f"{MAX_INT_DIGITS} digits, or text that is not the number its column's type says",
        "time": "a time that cannot be read, is beyond the calendar, or has no offset and "
        "no time zone was configured",
        "csv": "a CSV row that cannot be parsed (a quote not closed, text after a closing quote)",
        "field-count": "a CSV row whose number of fields differs from the header's",
        "missing-field": "a required field or column is absent or empty",
        "unknown-field": "a field the mapping does not know (JSON Lines, or unknown='reject')",
        "type": "a field of the wrong type (a number where text is needed, a list as an id ...)",
        "value": "a field whose value is not allowed (an unknown stage or record type, a "
        "kind missing from a value map, the system actor)",
    }
)
"""Every :attr:`Rejected.code`, with what it means."""

# ---------------------------------------------------------------- errors


class UnreadableSource(BuyerJourneyError, OSError):
    """A source cannot be read at all: it is missing, not a regular file, or not its format.

    Bad *records* never raise (they are :class:`Rejected`); this is for a
    source as a whole.

    Attributes:
        source: The source as given.
    """

    def __init__(self, source: object, message: str) -> None:
        self.source = str(source)
        super().__init__(f"{self.source}: {message}")

    def __str__(self) -> str:
        return str(self.args[0])


class InvalidMapping(BuyerJourneyError, ValueError):
    """A column mapping cannot be used: a bad time zone, a column the file does not have ...

    Attributes:
        field: The mapping field concerned (``"time_zone"``, ``"lead"`` ...).
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"column mapping, {field}: {message}")


# ---------------------------------------------------------------- values


@attrs.frozen
class Location:
    """Where an input record was.

    Attributes:
        source: The file as given (or the ``name`` given for an iterable of lines).
        line: 1-based. JSON Lines: the physical line. CSV: the physical line
            the row starts on, the header being line 1 (the first data row is
            line 2). Parquet: the row number counted from 1 (no header line).
    """

    source: str
    line: int

    def __str__(self) -> str:
        return f"{self.source}:{self.line}"


def safe_text(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    """*text* made safe to print: control characters and lone surrogates escaped, truncated.

    Args:
        text: Any text, including surrogates from ``surrogateescape`` decoding.
        limit: The most characters returned (the last one is ``…`` when cut).
    """
    out: list[str] = []
    size = 0
    for char in text:
        if unicodedata.category(char) in ("Cc", "Cs", "Co", "Cn", "Zl", "Zp"):
            code = ord(char)
            piece = f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
        else:
            piece = char
        if size + len(piece) > limit - 1:
            out.append("…")
            return "".join(out)
        out.append(piece)
        size += len(piece)
    return "".join(out)


def _safe(value: str) -> str:
    return safe_text(value)


@attrs.frozen
class Rejected:
    """An input record set aside: where it was, why, and what it said.

    Attributes:
        location: Where it was.
        code: A stable code from :data:`REJECT_CODES`.
        reason: What was wrong, what was received and what to do.
        text: The record's raw text, at most :data:`MAX_TEXT_CHARS`
            characters, with control characters and lone surrogates escaped.
    """

    location: Location
    code: str
    reason: str
    text: str = attrs.field(default="", converter=_safe)

    def __str__(self) -> str:
        return f"{self.location}: [{self.code}] {self.reason}"


def _frozen_names(value: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(value))


def _optional_names(value: Mapping[str, str] | None) -> Mapping[str, str] | None:
    return None if value is None else MappingProxyType(dict(value))


@attrs.frozen
class Constant:
    """A kind (or stage) that is the same for every row.

    Args:
        value: The constant, e.g. ``"qualify"``.
    """

    value: str


@attrs.frozen
class ValueMap:
    """A kind (or stage) derived from another column through a table of values.

    Args:
        column: The column read.
        values: The column's value to the kind.
        default: The kind for a value not in the table; ``None`` rejects the
            row (code ``value``).
    """

    column: str
    values: Mapping[str, str] = attrs.field(converter=_frozen_names)
    default: str | None = None


Derived: TypeAlias = "str | Constant | ValueMap"
ValueType = Literal["str", "int", "float", "bool"]
VALUE_TYPES: Final = ("str", "int", "float", "bool")
Unknown = Literal["ignore", "reject", "properties"]
Item: TypeAlias = "Touch | Action | Rejected"


def _names(value: Sequence[str] | Mapping[str, str]) -> Mapping[str, str]:
    if isinstance(value, str):
        raise InvalidMapping(
            "attributes/properties",
            f"expected a tuple of column names or a mapping of column to name (got the str "
            f"{value!r}); write ({value!r},)",
        )
    pairs = dict(value) if isinstance(value, Mapping) else {name: name for name in value}
    return MappingProxyType(pairs)


def _zone(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise InvalidMapping(
            "time_zone",
            f"{value!r} is not a time zone name; use an IANA name such as 'Europe/Paris' or 'UTC'",
        ) from None
    return value


def _types(value: Mapping[str, str]) -> Mapping[str, ValueType]:
    for column, kind in value.items():
        if kind not in VALUE_TYPES:
            raise InvalidMapping(
                "types", f"column {column!r}: {kind!r} is not one of {', '.join(VALUE_TYPES)}"
            )
    return MappingProxyType(dict(value))  # type: ignore[arg-type]


@attrs.frozen
class Columns:
    """How the columns (or keys) of a record map onto a :class:`~buyerjourney.Touch`.

    Args:
        lead: The column holding the lead id.
        time: The column holding the time.
        kind: The column holding the kind, a :class:`Constant`, or a
            :class:`ValueMap` of another column.
        touch_id: The column holding the touch id, or ``None`` to derive a
            deterministic id from the source's file name and the row's
            normalised content (lead, time in UTC, kind, attributes,
            properties): re-reading the file gives the same ids, and two
            identical rows are one touch (the second is a duplicate).
        time_format: A :func:`~datetime.datetime.strptime` format for text
            times; ``None`` reads ISO 8601 (a bare date is midnight).
        time_zone: The IANA zone of naive times (an ambiguous time at a DST
            change takes its first occurrence; a time the change skips, the
            offset in force before it). Times with an offset keep it.
            Everything becomes UTC. ``None``: a naive time is rejected.
        attributes: Columns that become lead attributes: a tuple of names, or
            a mapping of column to attribute name.
        properties: Columns that become touch properties, likewise.
        types: Column to ``"str"``, ``"int"``, ``"float"`` or ``"bool"``:
            how the text of an attribute or property column is converted
            (``bool`` reads true/false, yes/no, 1/0 in any case).
        unknown: What to do with a column the mapping does not name:
            ``"ignore"`` it, ``"reject"`` (a CSV or Parquet header with such a
            column raises :class:`InvalidMapping`; a JSON record with such a
            key is rejected, code ``unknown-field``), or keep it as a
            ``"properties"`` entry.
        delimiter: The CSV field delimiter.

    An empty cell (CSV) or a null (JSON, Parquet) in an attribute or property
    column gives the value ``None``, so missing values stay a group of their
    own; in the lead, time, kind or touch id column it rejects the row
    (``missing-field``).

    Raises:
        InvalidMapping: The time zone is unknown, a type is not one of the
            four, or a name is empty.
    """

    lead: str = "lead_id"
    time: str = "at"
    kind: str | Constant | ValueMap = "kind"
    touch_id: str | None = "touch_id"
    time_format: str | None = None
    time_zone: str | None = attrs.field(default=None, converter=_zone)
    attributes: Mapping[str, str] = attrs.field(default=(), converter=_names)
    properties: Mapping[str, str] = attrs.field(default=(), converter=_names)
    types: Mapping[str, ValueType] = attrs.field(factory=dict, converter=_types)
    unknown: Unknown = "ignore"
    delimiter: str = ","

    def __attrs_post_init__(self) -> None:
        for field in ("lead", "time"):
            if not isinstance(getattr(self, field), str) or not getattr(self, field):
                raise InvalidMapping(field, "must name a column (a non-empty str)")
        if self.unknown not in ("ignore", "reject", "properties"):
            raise InvalidMapping(
                "unknown", f"{self.unknown!r} is not 'ignore', 'reject' or 'properties'"
            )
        if not isinstance(self.delimiter, str) or len(self.delimiter) != 1:
            raise InvalidMapping("delimiter", f"must be one character (got {self.delimiter!r})")

    def used(self) -> tuple[str, ...]:
        """Every column the mapping reads."""
        names = [self.lead, self.time, *self.attributes, *self.properties]
        names += _derived_columns(self.kind)
        if self.touch_id is not None:
            names.append(self.touch_id)
        return tuple(dict.fromkeys(names))


def _derived_columns(value: str | Constant | ValueMap | None) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, ValueMap):
        return [value.column]
    return []


@attrs.frozen
class StageColumns:
    """How the columns of a CRM export map onto stage entries.

    Two shapes are read:

    * **long**: one row per lead, stage and date: ``stage`` names the column
      holding the stage (or is a :class:`Constant` / :class:`ValueMap`), and
      ``time`` the column holding the date;
    * **wide**: one row per lead with a date column per stage: ``stages``
      maps each date column to its stage; an empty cell means the lead never
      entered that stage.

    Args:
        lead: The column holding the lead id.
        stage: The stage column (long shape); ignored when ``stages`` is given.
        time: The date column (long shape).
        stages: Date column to stage name (wide shape).
        stage_map: The CRM's stage names to the funnel's (``{"Closed Won": "won"}``);
            a name absent from it is used as it is.
        time_format: As for :class:`Columns`.
        time_zone: As for :class:`Columns`.
        attributes: Columns that become lead attributes, given by a touch of
            kind ``attributes_kind`` at the row's earliest date, just before
            its overrides (no touch when empty).
        attributes_kind: The kind of that touch.
        types: As for :class:`Columns`.
        delimiter: The CSV field delimiter.

    A TOML mapping file gives one through :func:`load_stage_columns` (the
    keys: :func:`stage_columns_from_dict`).

    Raises:
        InvalidMapping: As for :class:`Columns`.
    """

    lead: str = "lead_id"
    stage: str | Constant | ValueMap = "stage"
    time: str = "at"
    stages: Mapping[str, str] | None = attrs.field(default=None, converter=_optional_names)
    stage_map: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen_names)
    time_format: str | None = None
    time_zone: str | None = attrs.field(default=None, converter=_zone)
    attributes: Mapping[str, str] = attrs.field(default=(), converter=_names)
    attributes_kind: str = "crm_update"
    types: Mapping[str, ValueType] = attrs.field(factory=dict, converter=_types)
    delimiter: str = ","

    def used(self) -> tuple[str, ...]:
        """Every column the mapping reads."""
        names = [self.lead, *self.attributes]
        if self.stages is not None:
            names += list(self.stages)
        else:
            names += [self.time, *_derived_columns(self.stage)]
        return tuple(dict.fromkeys(names))


Converter: TypeAlias = Callable[[Mapping[str, Any], Location], Iterable[Touch | Action]]
MakeConverter: TypeAlias = Callable[[Sequence[str] | None], Converter]

# ---------------------------------------------------------------- per-record problems


class _Bad(Exception):
    """A record is rejected: raised inside the per-record code, caught per record."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def _got(value: object) -> str:
    shown = safe_text(repr(value), 80)
    return f"got {shown} that is a {type(value).__name__}"


class _NumberTooLong(ValueError):
    pass


class _NotFinite(ValueError):
    pass


class _DuplicateKey(ValueError):
    pass


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _NumberTooLong(text)
    return int(text)


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotFinite(text)
    return value


def _parse_constant(text: str) -> float:
    raise _NotFinite(text)


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return out


_DECODER = json.JSONDecoder(
    parse_int=_parse_int,
    parse_float=_parse_float,
    parse_constant=_parse_constant,
    object_pairs_hook=_pairs,
)


def _depth_exceeds(text: str, limit: int) -> bool:
    """Whether brackets outside strings nest deeper than *limit* (a linear scan)."""
    if text.count("[") + text.count("{") <= limit:
        return False
    depth = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > limit:
                return True
        elif char in "]}":
            depth -= 1
    return False


def _has_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return any("\ud800" <= c <= "\udfff" for c in value)
    if isinstance(value, dict):
        return any(_has_surrogate(k) or _has_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_surrogate(v) for v in value)
    return False


def _loads(text: str) -> Any:
    """Parse one JSON line under the limits, raising :class:`_Bad` with a code."""
    if _depth_exceeds(text, MAX_DEPTH):
        raise _Bad(
            "too-deep",
            f"the JSON nests deeper than {MAX_DEPTH} levels; flatten the record",
        )
    try:
        data = _DECODER.decode(text)
    except _NumberTooLong:
        raise _Bad(
            "number",
            f"an integer has more than {MAX_INT_DIGITS} digits; send it as text if it is an id",
        ) from None
    except _NotFinite as exc:
        raise _Bad(
            "number",
            f"the number {safe_text(str(exc), 40)} is not finite (NaN, Infinity or out of a "
            "float's range); send a finite number or null",
        ) from None
    except _DuplicateKey as exc:
        raise _Bad(
            "duplicate-key",
            f"the key {safe_text(str(exc), 60)!r} appears twice in one object; keep one",
        ) from None
    except json.JSONDecodeError as exc:
        raise _Bad(
            "json", f"not valid JSON ({exc.msg} at column {exc.colno}); fix the line"
        ) from None
    except (ValueError, RecursionError) as exc:
        raise _Bad("json", f"not valid JSON ({safe_text(str(exc), 80)}); fix the line") from None
    if "\\u" in text and _has_surrogate(data):
        raise _Bad(
            "encoding",
            "a string holds a lone surrogate (an escape such as \\ud800 without its pair), "
            "which is not text; fix the producer's encoding",
        )
    return data


# ---------------------------------------------------------------- opening sources


def _open_regular(source: str | os.PathLike[str]) -> IO[bytes]:
    """Open *source* for reading bytes, refusing anything but a regular file."""
    path = _regular(source)
    try:
        return path.open("rb")
    except OSError as exc:
        raise UnreadableSource(source, f"cannot be opened ({exc.strerror})") from None


def _regular(source: str | os.PathLike[str]) -> Path:
    """*source* as a path, if it is a regular file; :class:`UnreadableSource` otherwise."""
    path = Path(source)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise UnreadableSource(source, "no such file; check the path") from None
    except OSError as exc:
        raise UnreadableSource(source, f"cannot be read ({exc.strerror}); check the path") from None
    mode = info.st_mode
    if not stat.S_ISREG(mode):
        what = (
            "a directory"
            if stat.S_ISDIR(mode)
            else "a FIFO (named pipe)"
            if stat.S_ISFIFO(mode)
            else "a device"
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "a socket"
            if stat.S_ISSOCK(mode)
            else "not a regular file"
        )
        raise UnreadableSource(
            source, f"is {what}, not a regular file; give the path of a file (copy a stream to one)"
        )
    return path


Lines = Iterable[str] | Iterable[bytes]


def _physical_lines(handle: IO[bytes]) -> Iterator[tuple[int, bytes, bool]]:
    """``(line number, bytes, oversized)`` for each line, never holding more than the limit."""
    number = 0
    while True:
        line = handle.readline(MAX_RECORD_BYTES + 1)
        if not line:
            return
        number += 1
        if len(line) > MAX_RECORD_BYTES and not line.endswith(b"\n"):
            head = line[:MAX_TEXT_CHARS]
            while True:
                rest = handle.readline(1 << 16)
                if not rest or rest.endswith(b"\n"):
                    break
            yield number, head, True
            continue
        yield number, line, False


def _iter_lines(lines: Lines) -> Iterator[tuple[int, bytes, bool]]:
    for number, line in enumerate(lines, start=1):
        raw = line.encode("utf-8", "surrogatepass") if isinstance(line, str) else bytes(line)  # type: ignore[arg-type]
        if len(raw) > MAX_RECORD_BYTES:
            yield number, raw[:MAX_TEXT_CHARS], True
        else:
            yield number, raw, False


def _too_large(location: Location, raw: bytes) -> Rejected:
    return Rejected(
        location,
        "too-large",
        f"the record is longer than {MAX_RECORD_BYTES:,} bytes (MAX_RECORD_BYTES); split it "
        "or move large values out of the stream",
        raw.decode("utf-8", "backslashreplace"),
    )


def _decode(raw: bytes, number: int) -> str:
    """A line's text, or :class:`_Bad` ``encoding``; drops a BOM on line 1."""
    if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Bad(
            "encoding",
            f"byte {raw[exc.start]:#04x} at column {exc.start + 1} is not UTF-8; re-export the "
            "file as UTF-8",
        ) from None
    return text


# ---------------------------------------------------------------- JSON Lines


_TOUCH_FIELDS = frozenset({"type", "touch_id", "lead_id", "at", "kind", "properties", "attributes"})


def _code_of(exc: InvalidTouch, data: Mapping[str, Any]) -> str:
    if exc.expected.startswith("absent (unknown field)"):
        return "unknown-field"
    if exc.field not in data or exc.value == "":
        return "missing-field"
    if exc.field == "at":
        return "time"
    if exc.field in ("actor", "action", "type"):
        return "value"
    return "type"


def _stream_item(data: Any, number: int) -> Touch | Action:
    """A record of the stream format: a touch, or an action when ``"type": "action"``."""
    if not isinstance(data, dict):
        raise _Bad(
            "json", f"a line must be a JSON object ({_got(data)}); write one object per line"
        )
    kind = data.get("type", "touch")
    if kind not in ("touch", "action"):
        raise _Bad("value", f"'type' must be 'touch' or 'action' ({_got(kind)})")
    try:
        if kind == "action":
            return Action.from_dict(data, position=number)
        return Touch.from_dict(data, position=number)
    except InvalidTouch as exc:
        code = _code_of(exc, data)
        message = str(exc).removeprefix(f"record {number}: ")
        raise _Bad(code, message + "; fix the record or its mapping") from None


def _read_jsonl(
    name: str,
    lines: Iterator[tuple[int, bytes, bool]],
    convert: Callable[[Any, int], Iterable[Touch | Action]],
) -> Iterator[tuple[Location, Item]]:
    for number, raw, oversized in lines:
        location = Location(name, number)
        if oversized:
            yield location, _too_large(location, raw)
            continue
        text = ""
        try:
            text = _decode(raw, number)
            if not text.strip():
                continue
            items = list(convert(_loads(text), number))
        except _Bad as bad:
            shown = text or raw.decode("utf-8", "backslashreplace")
            yield location, Rejected(location, bad.code, bad.reason, shown.rstrip("\r\n"))
            continue
        for item in items:
            yield location, item


def _object(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise _Bad(
            "json", f"a line must be a JSON object ({_got(data)}); write one object per line"
        )
    return data


# ---------------------------------------------------------------- CSV


def _csv_records(
    name: str, lines: Iterator[tuple[int, bytes, bool]], delimiter: str
) -> Iterator[tuple[Location, list[str] | Rejected]]:
    """Parse CSV records, each at most :data:`MAX_CSV_RECORD_LINES` physical lines.

    An unclosed quote rejects only its own line; the lines after it are
    parsed again. Text is decoded per physical line with ``surrogateescape``
    so that a bad byte rejects only the record holding it.
    """
    pending: list[tuple[int, str, bool]] = []
    source = iter(lines)
    exhausted = False

    def pull() -> bool:
        nonlocal exhausted
        if exhausted:
            return False
        for number, raw, oversized in source:
            data = raw[3:] if number == 1 and raw.startswith(b"\xef\xbb\xbf") else raw
            pending.append((number, data.decode("utf-8", "surrogateescape"), oversized))
            return True
        exhausted = True
        return False

    while pending or pull():
        number, first, oversized = pending[0]
        location = Location(name, number)
        if oversized:
            pending.pop(0)
            yield location, _too_large(location, first.encode("utf-8", "surrogateescape"))
            continue
        span = 1
        while True:
            text = "".join(line for _, line, _ in pending[:span])
            try:
                rows = list(csv.reader([text], delimiter=delimiter, strict=True))
            except csv.Error as exc:
                if "unexpected end of data" in str(exc):
                    has_more = span < len(pending) or pull()
                    too_big = any(big for _, _, big in pending[:span]) or len(text) > (
                        MAX_RECORD_BYTES
                    )
                    if has_more and span < MAX_CSV_RECORD_LINES and not too_big:
                        span += 1
                        continue
                    pending.pop(0)
                    yield (
                        location,
                        Rejected(
                            location,
                            "csv",
                            f"a quote opened on this line is not closed within "
                            f"{MAX_CSV_RECORD_LINES} lines (MAX_CSV_RECORD_LINES) or before the "
                            'end of the file; close or escape it ("" inside a quoted field)',
                            first.rstrip("\r\n"),
                        ),
                    )
                else:
                    pending.pop(0)
                    yield (
                        location,
                        Rejected(
                            location,
                            "csv",
                            f"the row cannot be parsed as CSV ({exc}); quote fields that hold "
                            "quotes and double the quotes inside",
                            first.rstrip("\r\n"),
                        ),
                    )
                break
            del pending[:span]
            if rows and rows[0]:
                yield location, rows[0]
            break


def _bad_text(cells: Sequence[str]) -> str | None:
    for cell in cells:
        if "\x00" in cell:
            return "a NUL character"
        for char in cell:
            if "\udc80" <= char <= "\udcff":
                return f"byte {ord(char) - 0xDC00:#04x} that is not UTF-8"
    return None


def _read_csv(
    name: str,
    lines: Iterator[tuple[int, bytes, bool]],
    make: MakeConverter,
    delimiter: str,
) -> Iterator[tuple[Location, Item]]:
    records = _csv_records(name, lines, delimiter)
    header: list[str] | None = None
    convert = None
    for location, record in records:
        if header is None:
            if isinstance(record, Rejected) or _bad_text(record):
                raise UnreadableSource(
                    name,
                    "the header (line 1) cannot be read "
                    f"({record.reason if isinstance(record, Rejected) else _bad_text(record)}); "
                    "the first line must name the columns",
                )
            header = [cell.strip() for cell in record]
            duplicates = sorted({c for c in header if header.count(c) > 1})
            if duplicates:
                raise UnreadableSource(
                    name, f"the header names {', '.join(map(repr, duplicates))} more than once"
                )
            convert = make(header)
            continue
        if isinstance(record, Rejected):
            yield location, record
            continue
        text = delimiter.join(record)
        problem = _bad_text(record)
        if problem is not None:
            yield (
                location,
                Rejected(
                    location,
                    "encoding",
                    f"the row holds {problem}; re-export the file as UTF-8 text",
                    text,
                ),
            )
            continue
        if len(record) != len(header):
            yield (
                location,
                Rejected(
                    location,
                    "field-count",
                    f"the row has {len(record)} fields, the header {len(header)}; quote fields "
                    f"that hold the delimiter {delimiter!r}",
                    text,
                ),
            )
            continue
        assert convert is not None
        try:
            row = {
                column: cell if cell.strip() else None
                for column, cell in zip(header, record, strict=True)
            }
            items = list(convert(row, location))
        except _Bad as bad:
            yield location, Rejected(location, bad.code, bad.reason, text)
            continue
        for item in items:
            yield location, item


# ---------------------------------------------------------------- Parquet


def _parquet_rows(
    source: str | os.PathLike[str],
) -> tuple[list[str], Iterator[tuple[int, dict[str, Any] | _Bad]]]:
    try:
        import pyarrow as pa  # type: ignore[import-untyped]  # noqa: PLC0415
        import pyarrow.parquet as pq  # type: ignore[import-untyped]  # noqa: PLC0415
    except ImportError:
        raise MissingExtra("Reading Parquet files", "arrow") from None
    handle = _open_regular(source)
    try:
        parquet = pq.ParquetFile(handle)
    except (pa.ArrowException, OSError, ValueError) as exc:
        handle.close()
        raise UnreadableSource(
            source, f"is not a Parquet file ({safe_text(str(exc), 120)}); check the file or format="
        ) from None
    names = list(parquet.schema_arrow.names)

    def rows() -> Iterator[tuple[int, dict[str, Any] | _Bad]]:
        number = 0
        try:
            for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS):
                try:
                    converted: list[dict[str, Any] | _Bad] = list(batch.to_pylist())
                except (ValueError, OverflowError, pa.ArrowException):
                    converted = []
                    for index in range(batch.num_rows):
                        try:
                            converted.append(batch.slice(index, 1).to_pylist()[0])
                        except (ValueError, OverflowError, pa.ArrowException) as exc:
                            converted.append(
                                _Bad(
                                    "time",
                                    f"a value cannot be converted ({safe_text(str(exc), 100)}); "
                                    "times must be within years 1 to 9999",
                                )
                            )
                for row in converted:
                    number += 1
                    yield number, row
        except (pa.ArrowException, OSError) as exc:
            raise UnreadableSource(
                source,
                f"the Parquet data is damaged after row {number} ({safe_text(str(exc), 120)})",
            ) from None
        finally:
            handle.close()

    return names, rows()


def _read_parquet(
    source: str | os.PathLike[str], make: MakeConverter, label: str
) -> Iterator[tuple[Location, Item]]:
    names, rows = _parquet_rows(source)
    convert = make(names)
    for number, row in rows:
        location = Location(label, number)
        if isinstance(row, _Bad):
            yield location, Rejected(location, row.code, row.reason, "")
            continue
        try:
            items = list(convert(row, location))
        except _Bad as bad:
            yield location, Rejected(location, bad.code, bad.reason, _row_text(row))
            continue
        for item in items:
            yield location, item


def _row_text(row: Mapping[str, Any]) -> str:
    try:
        return json.dumps(row, default=str, ensure_ascii=False)
    except (ValueError, TypeError):
        return repr(row)


# ---------------------------------------------------------------- values of columns


_TRUE = frozenset({"true", "yes", "1", "t", "y"})
_FALSE = frozenset({"false", "no", "0", "f", "n"})


def _empty(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _text(column: str, value: object, what: str) -> str:
    """An id or kind: non-empty text (an integer is written in decimal)."""
    if _empty(value):
        raise _Bad("missing-field", f"the {what} column {column!r} is empty; fill it in")
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise _Bad("type", f"the {what} column {column!r} must be text ({_got(value)})")


def _plain(column: str, value: Any) -> Any:
    """A value from JSON or Parquet checked to be one an attribute may hold."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _Bad("number", f"column {column!r}: {value!r} is not a finite number")
        return value
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise _Bad("number", f"column {column!r}: {value} is not a finite number")
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [_plain(column, v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(column, v) for k, v in value.items()}
    raise _Bad(
        "type",
        f"column {column!r} holds a {type(value).__name__}, which an attribute cannot be; "
        "convert it to text or a number",
    )


def _typed(column: str, value: Any, kind: ValueType | None) -> Any:
    if kind is None or value is None:
        return _plain(column, value)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if kind == "str":
            return value
        if kind == "int":
            digits = text.lstrip("+-")
            if not digits.isdigit() or not digits.isascii():
                raise _Bad("number", f"column {column!r} is typed int ({_got(value)})")
            if len(digits) > MAX_INT_DIGITS:
                raise _Bad(
                    "number",
                    f"column {column!r}: an integer of {len(digits)} digits, more than "
                    f"{MAX_INT_DIGITS}; type the column 'str' if it is an id",
                )
            return int(text)
        if kind == "float":
            if len(text) > MAX_INT_DIGITS + 20:
                raise _Bad("number", f"column {column!r}: a number of {len(text)} characters")
            try:
                number = float(text)
            except ValueError:
                raise _Bad("number", f"column {column!r} is typed float ({_got(value)})") from None
            if not math.isfinite(number):
                raise _Bad("number", f"column {column!r}: {text!r} is not a finite number")
            return number
        lowered = text.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise _Bad(
            "value", f"column {column!r} is typed bool: true/false, yes/no, 1/0 ({_got(value)})"
        )
    plain = _plain(column, value)
    expected = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,)}[kind]
    if not isinstance(plain, expected) or (kind != "bool" and isinstance(plain, bool)):
        raise _Bad("type", f"column {column!r} is typed {kind} ({_got(value)})")
    return float(plain) if kind == "float" else plain  # type: ignore[arg-type]


def _time(column: str, value: object, time_format: str | None, zone: str | None) -> datetime:
    """A UTC time from text, a datetime or a date, or :class:`_Bad` ``time``."""
    if _empty(value):
        raise _Bad("missing-field", f"the time column {column!r} is empty; fill it in")
    if isinstance(value, str):
        text = value.strip()
        try:
            if time_format is not None:
                parsed = datetime.strptime(text, time_format)
            else:
                parsed = datetime.fromisoformat(text)
        except (ValueError, OverflowError):
            expected = (
                f"the format {time_format!r}"
                if time_format
                else "ISO 8601 such as 2024-03-01T09:30:00+01:00"
            )
            raise _Bad(
                "time",
                f"the time column {column!r} holds {safe_text(text, 60)!r}, which is not "
                f"{expected} within years 1 to 9999; fix the value or the mapping's time_format",
            ) from None
    elif isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        parsed = datetime(value.year, value.month, value.day)
    else:
        raise _Bad(
            "type", f"the time column {column!r} must be text or a timestamp ({_got(value)})"
        )
    if parsed.utcoffset() is None:
        if zone is None:
            raise _Bad(
                "time",
                f"the time {safe_text(str(value), 60)!r} in column {column!r} has no UTC offset; "
                "give the mapping a time_zone (such as 'Europe/Paris' or 'UTC')",
            )
        parsed = parsed.replace(tzinfo=ZoneInfo(zone))
    try:
        return parsed.astimezone(timezone.utc)
    except (OverflowError, ValueError):
        raise _Bad(
            "time",
            f"the time {safe_text(str(value), 60)!r} is beyond the calendar once in UTC; "
            "times must fall within years 1 to 9999",
        ) from None


def _derive(spec: str | Constant | ValueMap, row: Mapping[str, Any], what: str, field: str) -> str:
    if isinstance(spec, Constant):
        return spec.value
    if isinstance(spec, ValueMap):
        raw = _text(spec.column, row.get(spec.column), what)
        mapped = spec.values.get(raw, spec.default)
        if mapped is None:
            known = ", ".join(map(repr, list(spec.values)[:10]))
            raise _Bad(
                "value",
                f"the {what} column {spec.column!r} holds {safe_text(raw, 60)!r}, which the "
                f"mapping's {field} value map does not list (it lists {known}); add it or "
                "give the map a default",
            )
        return mapped
    return _text(spec, row.get(spec), what)


def _missing_columns(header: Sequence[str], used: Sequence[str], name: str) -> None:
    missing = [column for column in used if column not in header]
    if missing:
        raise InvalidMapping(
            "columns",
            f"{name} has no column {', '.join(map(repr, missing))} (its columns: "
            f"{safe_text(', '.join(header), 300)}); name the right columns in the mapping",
        )


class _TouchMapper:
    """Turns one row (a dict) into a touch under a :class:`Columns` mapping."""

    def __init__(self, columns: Columns, name: str, header: Sequence[str] | None) -> None:
        self.columns = columns
        self.file = Path(name).name
        self.used = frozenset(columns.used())
        if header is not None:
            _missing_columns(header, columns.used(), name)
            unknown = [column for column in header if column not in self.used]
            if unknown and columns.unknown == "reject":
                raise InvalidMapping(
                    "unknown",
                    f"{name} has columns the mapping does not name: "
                    f"{safe_text(', '.join(unknown), 300)}; map them, or use unknown='ignore'",
                )

    def touch(self, row: Mapping[str, Any], *, json_types: bool = False) -> Touch:
        columns = self.columns
        if json_types:
            for column in columns.used():
                if (
                    column not in row
                    and column not in columns.attributes
                    and column not in (columns.properties)
                ):
                    raise _Bad("missing-field", f"the record has no {column!r} field; add it")
            extra = sorted(set(row) - self.used)
            if extra and columns.unknown == "reject":
                raise _Bad(
                    "unknown-field",
                    f"the field {safe_text(extra[0], 60)!r} is not in the mapping; remove it or "
                    "map it",
                )
        lead = _text(columns.lead, row.get(columns.lead), "lead id")
        at = _time(columns.time, row.get(columns.time), columns.time_format, columns.time_zone)
        kind = _derive(columns.kind, row, "kind", "kind")
        attributes = {
            name: _typed(column, row.get(column), columns.types.get(column))
            for column, name in columns.attributes.items()
        }
        properties = {
            name: _typed(column, row.get(column), columns.types.get(column))
            for column, name in columns.properties.items()
        }
        if columns.unknown == "properties":
            for column, value in row.items():
                if column not in self.used:
                    properties[column] = _typed(column, value, columns.types.get(column))
        if columns.touch_id is None:
            touch_id = self._derived_id(lead, at, kind, attributes, properties)
        else:
            touch_id = _text(columns.touch_id, row.get(columns.touch_id), "touch id")
        return Touch(touch_id, lead, at, kind, properties, attributes)

    def _derived_id(
        self,
        lead: str,
        at: datetime,
        kind: str,
        attributes: Mapping[str, Any],
        properties: Mapping[str, Any],
    ) -> str:
        content = [self.file, lead, at.isoformat(), kind, attributes, properties]
        digest = _digest(content)
        return f"{self.file}:{digest}"


def _digest(content: object) -> str:
    text = json.dumps(content, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:24]


# ---------------------------------------------------------------- read()


def _guess_format(source: object, format: str | None) -> Format:
    if format is not None:
        if format not in ("jsonl", "csv", "parquet"):
            raise InvalidMapping("format", f"{format!r} is not 'jsonl', 'csv' or 'parquet'")
        return format  # type: ignore[return-value]
    if not isinstance(source, (str, os.PathLike)):
        raise InvalidMapping(
            "format", "lines given without a file name: pass format='jsonl' or format='csv'"
        )
    suffix = Path(source).suffix.lower()
    guessed = FORMATS.get(suffix)
    if guessed is None:
        raise InvalidMapping(
            "format",
            f"cannot tell the format of {str(source)!r} from its suffix {suffix!r} (known: "
            f"{', '.join(FORMATS)}); pass format='jsonl', 'csv' or 'parquet'",
        )
    return guessed


# ---------------------------------------------------------------- stage history


def importer_rules(owners: OwnerRules, importer: Actor | str = DEFAULT_IMPORTER) -> OwnerRules:
    """*owners* with *importer* holding every team, so its stage-history overrides are permitted.

    An override is permitted when the actor may act for the team that owns
    the journey at that moment; a stage-history import does not know that
    team in advance, so the importing actor is declared a member of every
    team (as :meth:`~buyerjourney.OwnerRules.solo` does for one person).
    Owners per stage are unchanged, so handoffs are still recorded.

    Args:
        owners: The pipeline's owner rules.
        importer: The importing actor (or its name).

    Raises:
        InvalidMapping: *importer* is the system actor or a policy.
    """
    name = _importer(importer).name
    members = {key: tuple(value) for key, value in owners.members.items()}
    members[name] = tuple(dict.fromkeys((*members.get(name, ()), *owners.teams)))
    return attrs.evolve(owners, members=members)


def _importer(actor: Actor | str) -> Actor:
    person = Actor(actor) if isinstance(actor, str) else actor
    if not isinstance(person, Actor) or not person.name:
        raise InvalidMapping("actor", f"must be an Actor or a person's name ({_got(actor)})")
    if person == SYSTEM or person.name == SYSTEM.name or person.name.startswith("policy:"):
        raise InvalidMapping(
            "actor",
            f"{person.name!r} is reserved: the system and policies act on their own, an import "
            "cannot claim to be them; name a person or a service account such as 'crm-import'",
        )
    return person


class _StageMapper:
    def __init__(
        self,
        columns: StageColumns,
        funnel: Funnel,
        actor: Actor,
        name: str,
        header: Sequence[str] | None,
    ) -> None:
        self.columns = columns
        self.funnel = funnel
        self.actor = actor
        self.name = name
        self.file = Path(name).name
        self.known = tuple(stage.name for stage in funnel.stages)
        if columns.stages is not None:
            self._check_known("stages", columns.stages.values())
        else:
            self._check_known("stage_map", columns.stage_map.values())
            if isinstance(columns.stage, Constant):
                value = columns.stage.value
                self._check_known("stage", (columns.stage_map.get(value, value),))
            elif isinstance(columns.stage, ValueMap):
                targets = [*columns.stage.values.values()]
                if columns.stage.default is not None:
                    targets.append(columns.stage.default)
                self._check_known("stage", (columns.stage_map.get(t, t) for t in targets))
        if header is not None:
            _missing_columns(header, columns.used(), name)

    def _check_known(self, field: str, stages: Iterable[str]) -> None:
        """Raise when a stage the mapping names (not one read from a row) is not the funnel's."""
        unknown = list(dict.fromkeys(s for s in stages if s not in self.known))
        if unknown:
            raise InvalidMapping(
                field,
                f"{', '.join(map(repr, unknown))} not a stage of funnel {self.funnel.name!r} "
                f"(its stages: {', '.join(self.known)}); map to one of them",
            )

    def items(self, row: Mapping[str, Any], _location: Location) -> list[Touch | Action]:
        columns = self.columns
        lead = _text(columns.lead, row.get(columns.lead), "lead id")
        entries: list[tuple[datetime, str, str]] = []
        if columns.stages is not None:
            for column, stage in columns.stages.items():
                if _empty(row.get(column)):
                    continue
                at = _time(column, row.get(column), columns.time_format, columns.time_zone)
                entries.append((at, stage, str(row.get(column)).strip()))
            if not entries:
                raise _Bad(
                    "missing-field",
                    f"every stage date column ({', '.join(columns.stages)}) is empty; the row "
                    "enters no stage",
                )
        else:
            raw = _derive(columns.stage, row, "stage", "stage")
            stage = columns.stage_map.get(raw, raw)
            if stage not in self.known:
                raise _Bad(
                    "value",
                    f"{safe_text(raw, 60)!r} is not a stage of funnel {self.funnel.name!r} "
                    f"(its stages: {', '.join(self.known)}); add it to stage_map",
                )
            value = row.get(columns.time)
            at = _time(columns.time, value, columns.time_format, columns.time_zone)
            entries.append((at, stage, str(value).strip()))
        entries.sort(key=lambda entry: entry[0])
        out: list[Touch | Action] = []
        if columns.attributes:
            attributes = {
                name: _typed(column, row.get(column), columns.types.get(column))
                for column, name in columns.attributes.items()
            }
            first = entries[0]
            touch_id = "stage-history:" + _digest([lead, first[0].isoformat(), attributes])
            out.append(Touch(touch_id, lead, first[0], columns.attributes_kind, {}, attributes))
        for at, stage, given in entries:
            action_id = "stage-history:" + _digest([lead, stage, at.isoformat()])
            reason = f"stage history from {self.file}: {stage} on {given}"
            out.append(
                Action(
                    "override",
                    lead,
                    at,
                    self.actor,
                    stage=stage,
                    reason=reason,
                    action_id=action_id,
                )
            )
        return out


def _is_path(source: object) -> bool:
    return isinstance(source, (str, os.PathLike))


def _check_source(source: object, kind: Format) -> None:
    """Raise now, not at the first ``next()``, for a source that cannot be read at all."""
    if _is_path(source):
        _regular(source)  # type: ignore[arg-type]
    elif kind == "parquet":
        raise InvalidMapping("format", "Parquet is read from a file path, not from lines")
    elif isinstance(source, (bytes, bytearray)) or not isinstance(source, Iterable):
        raise InvalidMapping("source", f"expected a path or an iterable of lines ({_got(source)})")
    if kind == "parquet":
        try:
            importlib.import_module("pyarrow.parquet")
        except ImportError:
            raise MissingExtra("Reading Parquet files", "arrow") from None


def _items(  # noqa: PLR0917
    source: str | os.PathLike[str] | Lines,
    kind: Format,
    label: str,
    make: MakeConverter,
    json_convert: Callable[[Any, int], Iterable[Touch | Action]],
    delimiter: str,
) -> Iterator[tuple[Location, Item]]:
    if kind == "parquet":
        yield from _read_parquet(source, make, label)  # type: ignore[arg-type]
        return
    if _is_path(source):
        handle = _open_regular(source)  # type: ignore[arg-type]
        lines: Iterator[tuple[int, bytes, bool]] = _physical_lines(handle)
        close: Callable[[], None] = handle.close
    else:
        lines, close = _iter_lines(source), lambda: None  # type: ignore[arg-type]
    try:
        if kind == "csv":
            yield from _read_csv(label, lines, make, delimiter)
        else:
            yield from _read_jsonl(label, lines, json_convert)
    finally:
        close()


def read(
    source: str | os.PathLike[str] | Lines,
    *,
    format: Format | None = None,
    columns: Columns | None = None,
    name: str | None = None,
) -> Iterator[tuple[Location, Item]]:
    """Read touches (and actions) from a JSON Lines, CSV or Parquet source.

    Returns an iterator of ``(location, item)`` in input order, where *item*
    is a :class:`~buyerjourney.Touch`, an :class:`~buyerjourney.Action`
    (JSON Lines in the stream format only) or a :class:`Rejected` record. A
    bad record is rejected and the reader goes on: nothing a record holds
    makes the reader raise, and the records around it are read as usual.

    JSON Lines without *columns* is the stream format (as
    :meth:`Touch.from_dict <buyerjourney.Touch.from_dict>`: an unknown field
    is rejected; ``"type": "action"`` lines are actions, and may never claim
    the system actor). With *columns*, each line is an object mapped like a
    CSV row, always to a touch. CSV and Parquet are always mapped
    (``Columns()`` by default: columns ``lead_id``, ``at``, ``kind`` and
    ``touch_id``).

    Args:
        source: A path, or an iterable of lines (``str`` or ``bytes``; JSON
            Lines or CSV only, *format* required).
        format: ``"jsonl"``, ``"csv"`` or ``"parquet"``; guessed from the
            suffix (:data:`FORMATS`) when ``None``.
        columns: The column mapping.
        name: The source name used in locations and derived ids (default:
            the path as given, or ``"<lines>"``).

    Raises:
        UnreadableSource: The source is missing, a directory, FIFO or device
            (raised by the call); not Parquet, or a CSV header that cannot be
            read (raised by the first ``next()``).
        InvalidMapping: The format cannot be guessed; the mapping names a
            column the file does not have (first ``next()``).
        MissingExtra: A Parquet file, and pyarrow (the ``arrow`` extra) is not installed.
    """
    kind = _guess_format(source, format)
    _check_source(source, kind)
    label = name or (str(source) if _is_path(source) else "<lines>")
    mapping = columns if columns is not None else Columns()

    def make(header: Sequence[str] | None) -> Converter:
        mapper = _TouchMapper(mapping, label, header)
        return lambda row, _location: (mapper.touch(row, json_types=header is None),)

    if columns is None:

        def json_convert(data: Any, number: int) -> Iterable[Touch | Action]:
            return (_stream_item(data, number),)

    else:
        mapped = make(None)

        def json_convert(data: Any, number: int) -> Iterable[Touch | Action]:
            return mapped(_object(data), Location(label, number))

    return _items(source, kind, label, make, json_convert, mapping.delimiter)


def read_stage_history(
    source: str | os.PathLike[str] | Lines,
    *,
    columns: StageColumns,
    funnel: Funnel,
    actor: Actor | str = DEFAULT_IMPORTER,
    format: Format | None = None,
    name: str | None = None,
) -> Iterator[tuple[Location, Touch | Action | Rejected]]:
    """Read a CRM export of stage entries as override actions.

    Each stage entry becomes ``Action("override", lead, at, actor,
    stage=..., reason="stage history from <file>: <stage> on <date>",
    action_id=...)``. The action id is derived from the lead, the stage and
    the time in UTC only (not the file name), so importing the same history
    again, from the same file or from a later export, is idempotent for a
    store that skips ids it has seen. When ``columns.attributes`` is not
    empty, each row first gives a touch carrying those attributes, at the
    row's earliest date (its id is derived likewise). Rows come in file
    order: exports are rarely time-ordered, so pass the result through
    :func:`in_time_order` before an engine.

    The overrides are permitted when *actor* may act for the team owning the
    journey at that moment: give the engine ``importer_rules(owners, actor)``
    (the importer holds every team), or an actor whose ``team`` is that
    owner. An override needs an existing journey (a touch creates it), so
    read the leads first.

    Args:
        source: A CSV, JSON Lines (objects with the columns as keys) or
            Parquet file, or an iterable of lines.
        columns: The mapping.
        funnel: The funnel the stages belong to (an unknown stage is
            rejected, code ``value``).
        actor: The importing actor (default :data:`DEFAULT_IMPORTER`); never
            the system actor or a policy.
        format: As for :func:`read`.
        name: As for :func:`read`.

    Raises:
        InvalidMapping: The actor is reserved, a stage the mapping names
            (in ``columns.stages``, as a target of ``columns.stage_map``, as
            a :class:`Constant` or :class:`ValueMap` stage) is not in the
            funnel (raised by the call), or a column is missing from the
            header (first ``next()``).
        UnreadableSource: As for :func:`read`.
        MissingExtra: As for :func:`read`.
    """
    person = _importer(actor)
    kind = _guess_format(source, format)
    _check_source(source, kind)
    label = name or (str(source) if _is_path(source) else "<lines>")
    mapper = _StageMapper(columns, funnel, person, label, None)

    def make(header: Sequence[str] | None) -> Converter:
        return _StageMapper(columns, funnel, person, label, header).items

    def json_convert(data: Any, number: int) -> Iterable[Touch | Action]:
        return mapper.items(_object(data), Location(label, number))

    return _items(source, kind, label, make, json_convert, columns.delimiter)


# ---------------------------------------------------------------- time order


def in_time_order(
    items: Iterable[tuple[Location, Item]], *, limit: int = ORDER_LIMIT
) -> Iterator[tuple[Location, Item]]:
    """The *items* sorted by time (stable: equal times keep their input order).

    Rejected entries carry no time: they are passed on at once, in input
    order, ahead of buffered items. Up to *limit* items are held; when the
    buffer is full, the earliest is yielded to make room. So the output is
    exactly sorted whenever the whole input fits (or every item is at most
    *limit* places away from its sorted position); beyond that an item may
    come after a later one, and the engine treats it as late. Memory is
    bounded by *limit* items.

    Args:
        items: ``(location, item)`` pairs, as :func:`read` and
            :func:`read_stage_history` give.
        limit: The most items held at once (:data:`ORDER_LIMIT` by default).

    Raises:
        ValueError: *limit* is not a positive int.
    """
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        msg = f"limit must be a positive int (got {limit!r})"
        raise ValueError(msg)
    return _ordered(items, limit)


def _ordered(items: Iterable[tuple[Location, Item]], limit: int) -> Iterator[tuple[Location, Item]]:
    heap: list[tuple[datetime, int, Location, Touch | Action]] = []
    counter = itertools.count()
    for location, item in items:
        if isinstance(item, Rejected):
            yield location, item
            continue
        entry = (item.at, next(counter), location, item)
        if len(heap) >= limit:
            _, _, where, earliest = heapq.heappushpop(heap, entry)
            yield where, earliest
        else:
            heapq.heappush(heap, entry)
    while heap:
        _, _, where, earliest = heapq.heappop(heap)
        yield where, earliest


# ---------------------------------------------------------------- mapping files

_COLUMN_KEYS = frozenset(
    {
        "lead", "time", "kind", "kind_constant", "kind_map", "touch_id", "time_format",
        "time_zone", "attributes", "properties", "types", "unknown", "delimiter",
    }
)  # fmt: skip


def columns_from_dict(data: Mapping[str, Any], *, source: str = "<mapping>") -> Columns:
    """A :class:`Columns` from a mapping file's table (the keys are its field names).

    The kind is ``kind = "column"``, ``kind_constant = "signup"``, or a
    ``[kind_map]`` table with ``column``, ``values`` and an optional
    ``default``; ``touch_id = false`` derives the ids.

    Raises:
        InvalidMapping: An unknown key, or a value of the wrong type.
    """
    unknown = sorted(set(data) - _COLUMN_KEYS)
    if unknown:
        msg = (
            f"{source}: unknown key {unknown[0]!r}; the keys are {', '.join(sorted(_COLUMN_KEYS))}"
        )
        raise InvalidMapping(unknown[0], msg)
    kinds = [key for key in ("kind", "kind_constant", "kind_map") if key in data]
    if len(kinds) > 1:
        msg = f"{source}: give one of kind, kind_constant and kind_map (got {', '.join(kinds)})"
        raise InvalidMapping(kinds[1], msg)
    values: dict[str, Any] = {}
    try:
        for key in ("lead", "time", "time_format", "time_zone", "unknown", "delimiter"):
            if key in data:
                values[key] = _mapping_text(data[key], key, source)
        if "touch_id" in data:
            touch_id = data["touch_id"]
            values["touch_id"] = (
                None if touch_id is False else _mapping_text(touch_id, "touch_id", source)
            )
        if "kind" in data:
            values["kind"] = _mapping_text(data["kind"], "kind", source)
        elif "kind_constant" in data:
            values["kind"] = Constant(_mapping_text(data["kind_constant"], "kind_constant", source))
        elif "kind_map" in data:
            table = data["kind_map"]
            if not isinstance(table, Mapping) or not isinstance(table.get("values"), Mapping):
                msg = f"{source}: kind_map must be a table with column and values"
                raise InvalidMapping("kind_map", msg)
            values["kind"] = ValueMap(
                _mapping_text(table.get("column"), "kind_map.column", source),
                dict(table["values"]),
                table.get("default"),
            )
        for key in ("attributes", "properties", "types"):
            if key in data:
                values[key] = data[key]
        return Columns(**values)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, InvalidMapping):
            raise
        raise InvalidMapping("<mapping>", f"{source}: {exc}") from None


def _mapping_text(value: object, key: str, source: str) -> str:
    if not isinstance(value, str) or not value:
        msg = (
            f"{source}: {key} must be a non-empty string ({_got(value)}); write "
            f'{key} = "..." with the quotes'
        )
        raise InvalidMapping(key, msg)
    return value


def load_columns(path: str | os.PathLike[str]) -> Columns:
    """Read a column mapping from a TOML file (see :func:`columns_from_dict`).

    Args:
        path: The TOML file.

    Returns:
        The mapping.

    Raises:
        UnreadableSource: The file cannot be read.
        InvalidMapping: It is not valid TOML, or not a valid mapping.
    """
    name = os.fspath(path)
    return columns_from_dict(_load_toml(path), source=name)


def _load_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The table of a mapping file, read in bounded memory, with typed errors."""
    name = os.fspath(path)
    try:
        with _open_regular(path) as handle:
            raw = handle.read(MAX_RECORD_BYTES + 1)
    except UnreadableSource as exc:  # its message names the file already
        reason = str(exc).removeprefix(f"{exc.source}: ")
        raise UnreadableSource(name, f"cannot read the mapping file: {reason}") from None
    except OSError as exc:
        raise UnreadableSource(name, f"cannot read the mapping file: {exc}") from None
    if len(raw) > MAX_RECORD_BYTES:
        raise InvalidMapping(
            "<mapping>",
            f"{name}: larger than {MAX_RECORD_BYTES:,} bytes; a mapping file is a few lines "
            "of TOML",
        )
    try:
        data: dict[str, Any] = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InvalidMapping(
            "<mapping>", f"{name}: not a valid UTF-8 TOML file ({exc}); fix the file"
        ) from None
    return data


_STAGE_KEYS = frozenset(
    {
        "lead", "stage", "stage_constant", "stage_value_map", "time", "stages", "stage_map",
        "time_format", "time_zone", "attributes", "attributes_kind", "types", "delimiter",
    }
)  # fmt: skip
_LONG_KEYS = ("stage", "stage_constant", "stage_value_map", "time", "stage_map")


def stage_columns_from_dict(data: Mapping[str, Any], *, source: str = "<mapping>") -> StageColumns:
    """A :class:`StageColumns` from a mapping file's table (the keys are its field names).

    The **long** shape (one row per lead, stage and date) names the date
    column with ``time`` and the stage with one of ``stage = "column"``,
    ``stage_constant = "won"`` (every row enters that stage) or a
    ``[stage_value_map]`` table with ``column``, ``values`` and an optional
    ``default``; ``[stage_map]`` renames the CRM's stage names to the
    funnel's. The **wide** shape (a date column per stage) is a ``[stages]``
    table of date column to stage, and takes none of the long shape's keys.
    Both take ``lead``, ``time_format``, ``time_zone``, ``attributes`` (an
    array of column names or a table of column to attribute name),
    ``attributes_kind``, ``[types]`` (column to ``"str"``, ``"int"``,
    ``"float"`` or ``"bool"``) and ``delimiter``. A key left out takes the
    :class:`StageColumns` default.

    Whether the stages are the funnel's is checked when the file is read
    (:func:`read_stage_history`), since the mapping does not know the funnel.

    Args:
        data: The table, as :mod:`tomllib` (or :mod:`json`) gives it.
        source: The file it came from, named in error messages.

    Returns:
        The mapping.

    Raises:
        InvalidMapping: An unknown key, a value of the wrong type, keys of
            both shapes, two ways of giving the stage, an empty ``[stages]``,
            an unknown time zone or type; the message says which key, what
            was received and what to write instead.
    """
    if not isinstance(data, Mapping):
        raise InvalidMapping(
            "<mapping>", f"{source}: expected a table of keys ({_got(data)}); write lead = ..."
        )
    unknown = sorted(str(key) for key in set(data) - _STAGE_KEYS)
    if unknown:
        msg = (
            f"{source}: unknown key {unknown[0]!r}; the keys of a stage-history mapping are "
            f"{', '.join(sorted(_STAGE_KEYS))}"
        )
        raise InvalidMapping(unknown[0], msg)
    values: dict[str, Any] = {}
    if "stages" in data:
        both = [key for key in _LONG_KEYS if key in data]
        if both:
            msg = (
                f"{source}: [stages] is the wide shape (a date column per stage), {both[0]} "
                "belongs to the long shape (a stage column and a time column); keep one shape: "
                "in the wide shape, name the funnel's stages in [stages] directly"
            )
            raise InvalidMapping(both[0], msg)
        stages = _text_table(data["stages"], "stages", source, 'sql_date = "sql"')
        if not stages:
            msg = f"{source}: [stages] is empty; map each date column to its stage: sql_date = "
            raise InvalidMapping("stages", msg + '"sql"')
        values["stages"] = stages
    else:
        given = [key for key in ("stage", "stage_constant", "stage_value_map") if key in data]
        if len(given) > 1:
            msg = (
                f"{source}: give one of stage, stage_constant and stage_value_map "
                f"(got {', '.join(given)})"
            )
            raise InvalidMapping(given[1], msg)
        if "stage" in data:
            values["stage"] = _mapping_text(data["stage"], "stage", source)
        elif "stage_constant" in data:
            values["stage"] = Constant(
                _mapping_text(data["stage_constant"], "stage_constant", source)
            )
        elif "stage_value_map" in data:
            values["stage"] = _value_map(data["stage_value_map"], "stage_value_map", source)
        if "time" in data:
            values["time"] = _mapping_text(data["time"], "time", source)
        if "stage_map" in data:
            values["stage_map"] = _text_table(
                data["stage_map"], "stage_map", source, '"Closed Won" = "won"'
            )
    for key in ("lead", "time_format", "attributes_kind"):
        if key in data:
            values[key] = _mapping_text(data[key], key, source)
    if "time_zone" in data:
        values["time_zone"] = _mapping_zone(data["time_zone"], source)
    if "attributes" in data:
        values["attributes"] = _attribute_columns(data["attributes"], source)
    if "types" in data:
        values["types"] = _mapping_types(data["types"], source)
    if "delimiter" in data:
        delimiter = data["delimiter"]
        if not isinstance(delimiter, str) or len(delimiter) != 1:
            msg = f"{source}: delimiter must be one character (got {delimiter!r}); write "
            raise InvalidMapping("delimiter", msg + 'delimiter = ";"')
        values["delimiter"] = delimiter
    return StageColumns(**values)


def load_stage_columns(path: str | os.PathLike[str]) -> StageColumns:
    """Read a stage-history mapping from a TOML file (see :func:`stage_columns_from_dict`).

    Args:
        path: The TOML file.

    Returns:
        The mapping.

    Raises:
        UnreadableSource: The file cannot be read (missing, a directory, a device ...).
        InvalidMapping: It is larger than :data:`MAX_RECORD_BYTES`, not valid
            UTF-8 TOML, or not a valid mapping.
    """
    return stage_columns_from_dict(_load_toml(path), source=os.fspath(path))


def _text_table(value: object, key: str, source: str, example: str) -> dict[str, str]:
    """A TOML table of non-empty strings to non-empty strings."""
    if not isinstance(value, Mapping):
        msg = f"{source}: {key} must be a table ({_got(value)}); write [{key}] then {example}"
        raise InvalidMapping(key, msg)
    for name, text in value.items():
        if not isinstance(name, str) or not name or not isinstance(text, str) or not text:
            msg = (
                f"{source}: {key} maps names to names, but {name!r} maps to {text!r}; "
                f"write {example}"
            )
            raise InvalidMapping(key, msg)
    return dict(value)


def _value_map(value: object, key: str, source: str) -> ValueMap:
    if not isinstance(value, Mapping):
        msg = (
            f"{source}: {key} must be a table with column, values and an optional default "
            f'({_got(value)}); write [{key}] then column = "status" and [{key}.values]'
        )
        raise InvalidMapping(key, msg)
    extra = sorted(str(name) for name in set(value) - {"column", "values", "default"})
    if extra:
        msg = f"{source}: {key} has the unknown key {extra[0]!r}; its keys are column, values, "
        raise InvalidMapping(key, msg + "default")
    column = _mapping_text(value.get("column"), f"{key}.column", source)
    table = _text_table(value.get("values"), f"{key}.values", source, '"Closed Won" = "won"')
    default = value.get("default")
    if default is not None:
        default = _mapping_text(default, f"{key}.default", source)
    if not table and default is None:
        msg = (
            f"{source}: {key} maps no value and has no default, so every row would be "
            f'rejected; add [{key}.values] entries ("Closed Won" = "won") or a default'
        )
        raise InvalidMapping(key, msg)
    return ValueMap(column, table, default)


def _mapping_zone(value: object, source: str) -> str:
    text = _mapping_text(value, "time_zone", source)
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        msg = (
            f"{source}: time_zone {text!r} is not a time zone name; use an IANA name such as "
            '"Europe/Paris" or "UTC"'
        )
        raise InvalidMapping("time_zone", msg) from None
    return text


def _attribute_columns(value: object, source: str) -> tuple[str, ...] | dict[str, str]:
    if isinstance(value, Mapping):
        return _text_table(value, "attributes", source, 'segment = "segment"')
    if isinstance(value, (list, tuple)) and all(isinstance(name, str) and name for name in value):
        return tuple(value)
    msg = (
        f"{source}: attributes must be an array of column names or a table of column to "
        f'attribute name ({_got(value)}); write attributes = ["segment", "country"]'
    )
    raise InvalidMapping("attributes", msg)


def _mapping_types(value: object, source: str) -> dict[str, str]:
    table = _text_table(value, "types", source, 'employees = "int"')
    for column, kind in table.items():
        if kind not in VALUE_TYPES:
            msg = (
                f"{source}: types, column {column!r}: {kind!r} is not one of "
                f'{", ".join(VALUE_TYPES)}; write {column} = "int" (or str, float, bool)'
            )
            raise InvalidMapping("types", msg)
    return table


# ---------------------------------------------------------------- the stream format


def read_stream(
    source: str | os.PathLike[str] | Iterable[str],
) -> Iterator[tuple[int, Touch | Action | InvalidTouch]]:
    """Read a JSON Lines stream of touches and actions, from a path or an iterable of lines.

    The stream format of ``buyerjourney replay``, through :func:`read`: yields
    ``(line number, item)``, where a line that cannot be read or is not a
    valid touch or action yields an :class:`~buyerjourney.errors.InvalidTouch`
    in place of the item (its ``field`` is ``"<line>"``, its value the line's
    text), so the caller can quarantine it and go on. Blank lines are
    skipped; a byte order mark at the start is dropped.
    """
    for location, item in read(source, format="jsonl"):
        if isinstance(item, Rejected):
            yield location.line, UnreadableRecord(item)
        else:
            yield location.line, item


class UnreadableRecord(InvalidTouch):
    """A line of a stream that is not a valid touch or action (what :func:`read_stream` yields).

    Attributes:
        rejected: The reader's :class:`Rejected` entry (location, code, reason, text).
        code: Its stable code.
    """

    def __init__(self, rejected: Rejected) -> None:
        line = rejected.location.line
        super().__init__("<line>", rejected.text, rejected.reason, position=line)
        self.rejected = rejected
        self.code = rejected.code
        self.args = (f"line {line}: [{rejected.code}] {rejected.reason}",)

    def __str__(self) -> str:
        return str(self.args[0])
