"""The store commands: ``ingest``, ``journeys``, ``rebuild`` and ``quarantine``.

Usage::

    buyerjourney ingest FILE...|--sample|--stage-history FILE [--store PATH|URL]
                        [--funnel FILE|PRESET] [--owners FILE] [--pipeline FILE]
                        [--hooks MODULE] [--columns FILE] [--stage-columns FILE]
                        [--importer NAME] [--until TIME] [--format text|json]
                        [--no-progress]
    buyerjourney journeys [LEAD] [--store PATH|URL] [--format text|json]
    buyerjourney rebuild [--store PATH|URL] [--funnel ...|--pipeline FILE]
    buyerjourney quarantine [--store PATH|URL] [--retry] [--funnel ...|--pipeline FILE]
                            [--stage-history FILE --stage-columns FILE]

The store is a SQLite file (the default, ``journeys.db`` in the current
directory, or the ``BUYERJOURNEY_STORE`` environment variable) or a
PostgreSQL URL (``postgresql://...``, with the ``postgres`` extra). Ingesting
is resumable and idempotent: run it again on the same files and it applies
nothing new, and says so.

``--stage-history FILE`` (repeatable) imports a CRM export of stage entries
through :func:`~buyerjourney.readers.read_stage_history` with the
``--stage-columns`` mapping: its overrides, put in time order, are merged in
time order with the touches of the same command and applied by the same
driver, as the importer ``--importer`` (default ``crm-import``), who is
declared a member of every team for the command
(:func:`~buyerjourney.readers.importer_rules`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from buyerjourney._commands.common import (
    EXIT_FAILURE,
    EXIT_OK,
    FUNNEL_ARG_HELP,
    CommandError,
    add_pipeline_options,
    guard_hint,
    pipeline_arg,
    write_output,
)
from buyerjourney.errors import UnknownHook

if TYPE_CHECKING:
    from buyerjourney._adapters.readers import StageColumns
    from buyerjourney._adapters.sqlite import SQLiteStore
    from buyerjourney._commands.common import SubParsers
    from buyerjourney._core.journey import Journey
    from buyerjourney._core.records import Actor
    from buyerjourney._pipeline import IngestCounts, Located, Pipeline

__all__ = [
    "DEFAULT_STORE",
    "NO_JOURNEY",
    "STORE_ENV_VAR",
    "add_ingest",
    "add_journeys",
    "add_quarantine",
    "add_rebuild",
    "open_store",
]

DEFAULT_STORE = "journeys.db"
"""The store the commands use when neither ``--store`` nor ``BUYERJOURNEY_STORE`` names one."""

STORE_ENV_VAR = "BUYERJOURNEY_STORE"
"""The environment variable naming the default store (a SQLite path or a PostgreSQL URL)."""

_SAMPLE = "<sample>"


def open_store(spec: str | None) -> Any:
    """Open the store *spec* names: a PostgreSQL URL, or a SQLite file path.

    Raises:
        StoreError: The store cannot be opened.
        MissingExtra: A PostgreSQL URL without the ``postgres`` extra.
    """
    value = spec or os.environ.get(STORE_ENV_VAR) or DEFAULT_STORE
    if value.startswith(("postgresql://", "postgres://")):
        from buyerjourney._adapters.postgres import PostgresStore  # noqa: PLC0415  (the extra)

        return PostgresStore(value)
    from buyerjourney._adapters.sqlite import SQLiteStore  # noqa: PLC0415

    return SQLiteStore(value)


def _add_store_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        metavar="PATH|URL",
        help=f"a SQLite file or a postgresql:// URL (default: ${STORE_ENV_VAR}, "
        f"else {DEFAULT_STORE})",
    )


def _add_funnel_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--funnel",
        metavar="FILE|PRESET",
        help=FUNNEL_ARG_HELP + " (default: waterfall with --sample, else seed)",
    )
    parser.add_argument("--owners", metavar="FILE", help="owner rules (.toml or .json)")
    add_pipeline_options(parser)


def _pipeline(args: argparse.Namespace, *, sample: bool = False) -> Pipeline:
    funnel_arg = args.funnel
    if funnel_arg is None and not args.pipeline:
        funnel_arg = "waterfall" if sample else "seed"
    return pipeline_arg(args, funnel_arg, check_owners=True)


def _lateness(args: argparse.Namespace) -> timedelta:
    from buyerjourney._adapters.files import _parse_duration  # noqa: PLC0415  (one home)

    text = getattr(args, "lateness", None)
    if not text:
        return timedelta(0)
    value = _parse_duration(text)
    if isinstance(value, str):
        raise CommandError(f"--lateness {value}", usage=True)
    return value


def _engine(pipeline: Pipeline, store: Any, lateness: timedelta = timedelta(0)) -> Any:
    try:
        return pipeline.engine(store=store, lateness=lateness)
    except UnknownHook as exc:
        raise (guard_hint(exc) if exc.kind == "guard" else exc) from None


# ---------------------------------------------------------------- ingest


def add_ingest(subparsers: SubParsers) -> None:
    """Add ``buyerjourney ingest``."""
    parser = subparsers.add_parser(
        "ingest",
        help="ingest touch streams into a durable store (resumable, idempotent)",
        description=(
            "Ingest touches and actions (JSON Lines; CSV and Parquet with --columns), and CRM "
            "stage history (--stage-history with --stage-columns), into a store: each operation is "
            "committed with its input, a touch or action id seen before is skipped and counted "
            "as a duplicate, and lines that cannot be read or applied are kept in the store's "
            "quarantine with their file, line and reason. Run it again and it resumes where it "
            "stopped; on the same files it applies nothing new. Prints the counts and the "
            "funnel summary of the whole store."
        ),
    )
    parser.add_argument(
        "files", nargs="*", metavar="FILE", help="JSON Lines, CSV or Parquet files, in order"
    )
    parser.add_argument(
        "--sample", action="store_true", help="ingest the bundled sample (400 leads, waterfall)"
    )
    _add_store_option(parser)
    _add_funnel_options(parser)
    _add_reader_options(parser)
    _add_stage_history_options(parser)
    parser.add_argument(
        "--lateness",
        metavar="DURATION",
        help="how late a touch may arrive after a later touch of its lead and still be put "
        "in time order (ISO-8601, e.g. PT10M; default: none)",
    )
    parser.add_argument(
        "--until",
        metavar="TIME",
        help="advance the clock to this ISO-8601 time at the end (escalates SLAs up to it)",
    )
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bar (it shows only on a terminal)"
    )
    parser.set_defaults(run=_run_ingest)


def _read_file(args: argparse.Namespace, source: str, lines: Any = None) -> Iterator[Located]:
    """The inputs of one file (or of *lines*, named *source*), through the readers."""
    from buyerjourney._adapters.readers import (  # noqa: PLC0415
        Rejected,
        UnreadableRecord,
        in_time_order,
        load_columns,
        read,
    )
    from buyerjourney._pipeline import located  # noqa: PLC0415

    columns = load_columns(args.columns) if getattr(args, "columns", None) else None
    fmt = getattr(args, "input_format", None)
    if lines is None:
        items: Iterable[Any] = read(source, format=fmt, columns=columns)
    else:
        items = read(lines, format="jsonl", name=source)
    if getattr(args, "sort", False):
        items = in_time_order(items)
    pairs = (
        (loc.line, UnreadableRecord(item) if isinstance(item, Rejected) else item)
        for loc, item in items
    )
    yield from located(source, pairs)  # the one rule for ids and quarantine entries


def _inputs(args: argparse.Namespace) -> Iterator[Located]:
    if args.sample:
        from importlib.resources import files  # noqa: PLC0415

        text = files("buyerjourney").joinpath("data/sample_touches.jsonl").read_text("utf-8")
        yield from _read_file(args, _SAMPLE, text.splitlines(keepends=True))
    for name in args.files:
        yield from _read_file(args, name)


def _add_reader_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--input-format",
        choices=("jsonl", "csv", "parquet"),
        help="the files' format (default: from the suffix: .jsonl/.ndjson, .csv, .parquet)",
    )
    parser.add_argument(
        "--columns",
        metavar="FILE",
        help="a TOML column mapping (lead, time, kind or kind_constant or [kind_map], "
        "touch_id, time_format, time_zone, attributes, properties, types); see the readers guide",
    )
    parser.add_argument(
        "--sort",
        action="store_true",
        help="put the inputs in time order first (bounded buffer; for exports not sorted by time)",
    )


def _add_stage_history_options(parser: argparse.ArgumentParser) -> None:
    from buyerjourney._adapters.readers import DEFAULT_IMPORTER  # noqa: PLC0415

    parser.add_argument(
        "--stage-history",
        action="append",
        default=[],
        metavar="FILE",
        help="a CRM export of stage entries (CSV, JSON Lines or Parquet, from the suffix), "
        "read as overrides by the importer; repeat for several files (one mapping for all)",
    )
    parser.add_argument(
        "--stage-columns",
        metavar="FILE",
        help="the TOML mapping of --stage-history files: long shape (lead, stage or "
        "stage_constant or [stage_value_map], time, [stage_map]) or wide shape ([stages]), "
        "time_format, time_zone, attributes, attributes_kind, [types], delimiter "
        "(default: columns lead_id, stage, at); see the readers guide",
    )
    parser.add_argument(
        "--importer",
        metavar="NAME",
        help=f"the actor of the imported overrides, made a member of every team for this "
        f"command (default: {DEFAULT_IMPORTER.name}; never system or a policy)",
    )


def _stage_options(args: argparse.Namespace) -> tuple[StageColumns, Actor] | None:
    """The stage-history mapping and importer the options give, or ``None`` without files.

    Raises:
        CommandError: ``--stage-columns`` or ``--importer`` without
            ``--stage-history``, or a reserved importer (usage errors); a
            mapping file that cannot be read or used (a failure, status 1).
    """
    from buyerjourney._adapters.readers import (  # noqa: PLC0415
        DEFAULT_IMPORTER,
        InvalidMapping,
        StageColumns,
        UnreadableSource,
        load_stage_columns,
    )
    from buyerjourney._core.records import Actor  # noqa: PLC0415

    if not args.stage_history:
        for option, value in (
            ("--stage-columns", args.stage_columns),
            ("--importer", args.importer),
        ):
            if value is not None:
                raise CommandError(f"{option} needs --stage-history FILE", usage=True)
        return None
    try:
        columns = load_stage_columns(args.stage_columns) if args.stage_columns else StageColumns()
    except (InvalidMapping, UnreadableSource) as exc:
        prefix = "--stage-columns " if isinstance(exc, UnreadableSource) else "--stage-columns: "
        raise CommandError(prefix + str(exc)) from None
    if args.importer is not None and not args.importer.strip():
        raise CommandError("--importer needs a name (got an empty one)", usage=True)
    importer = DEFAULT_IMPORTER if args.importer is None else Actor(args.importer)
    return columns, importer


def _with_importer(pipeline: Pipeline, importer: Actor) -> Pipeline:
    """*pipeline* whose owner rules let *importer* act for every team (as the readers document).

    Raises:
        CommandError: (usage) The importer is the system actor, a policy, or unnamed.
    """
    import attrs  # noqa: PLC0415

    from buyerjourney._adapters.readers import InvalidMapping, importer_rules  # noqa: PLC0415

    try:
        owners = importer_rules(pipeline.owners, importer)
    except InvalidMapping as exc:
        raise CommandError(f"--importer: {exc}", usage=True) from None
    return attrs.evolve(pipeline, owners=owners)


def _stage_inputs(
    args: argparse.Namespace,
    funnel: Any,
    columns: StageColumns,
    importer: Actor,
    sources: Iterable[str] | None = None,
) -> Iterator[Located]:
    """The stage entries of every ``--stage-history`` file, in time order, as ingest inputs.

    Every file is opened and its header read here, before anything is
    ingested, so that a file or mapping that cannot be used stops the command
    with nothing applied.

    Raises:
        CommandError: A file cannot be read (missing, a directory, its
            format not known from its suffix, a header without the mapped
            columns), or a stage the mapping names is not the funnel's (a
            failure, status 1, as for every file the CLI cannot use).
    """
    import itertools  # noqa: PLC0415

    from buyerjourney._adapters.readers import (  # noqa: PLC0415
        FORMATS,
        InvalidMapping,
        UnreadableSource,
        in_time_order,
        read_stage_history,
    )

    readers: list[Iterable[Any]] = []
    for name in args.stage_history if sources is None else sources:
        try:
            items = read_stage_history(name, columns=columns, funnel=funnel, actor=importer)
            first = next(items, None)  # reads the header: a missing column raises now
        except UnreadableSource as exc:  # its message names the file
            raise CommandError(f"--stage-history {exc}") from None
        except InvalidMapping as exc:
            message = str(exc)
            if exc.field == "format":
                suffix = os.path.splitext(name)[1]
                message = (
                    f"the format is told by the file's suffix ({suffix or 'none'}), which is "
                    f"not one of {', '.join(FORMATS)}; rename the file"
                )
            raise CommandError(f"--stage-history {name}: {message}") from None
        readers.append(items if first is None else itertools.chain((first,), items))
    return _located_pairs(in_time_order(itertools.chain.from_iterable(readers)))


def _located_pairs(items: Iterable[Any]) -> Iterator[Located]:
    """Reader pairs of several files, as ``(source, line, input)`` through the one rule."""
    from buyerjourney._adapters.readers import Rejected, UnreadableRecord  # noqa: PLC0415
    from buyerjourney._pipeline import located  # noqa: PLC0415

    for loc, item in items:
        value = UnreadableRecord(item) if isinstance(item, Rejected) else item
        yield from located(loc.source, ((loc.line, value),))


_BEFORE_ALL = datetime.min.replace(tzinfo=timezone.utc)


def _merged(touches: Iterable[Located], history: Iterable[Located]) -> Iterator[Located]:
    """The *touches* and the stage *history* merged by time; on equal times touches come first.

    An input that could not be read has no time: it keeps the time of the
    input before it in its stream, so it comes out where it was read.
    """
    import heapq  # noqa: PLC0415

    from buyerjourney._core.protocols import QuarantineEntry  # noqa: PLC0415

    def timed(stream: Iterable[Located]) -> Iterator[tuple[datetime, Located]]:
        last = _BEFORE_ALL
        for entry in stream:
            if not isinstance(entry[2], QuarantineEntry):
                last = entry[2].at
            yield last, entry

    for _, entry in heapq.merge(timed(touches), timed(history), key=lambda pair: pair[0]):
        yield entry


NO_JOURNEY = "no-journey"
"""The quarantine code of an imported stage entry whose lead has no journey yet."""


def _journeys_first(engine: Any, items: Iterable[Located], history: set[str]) -> Iterator[Located]:
    """*items*, where a stage entry (from a *history* file) of a lead with no journey is set aside.

    The engine would refuse such an override, and a refusal is final: its id
    is stored, so importing the history again would count it as a duplicate.
    Quarantined instead (code :data:`NO_JOURNEY`), it lands on a retry once
    the lead's touches are in. A lead counts as having a journey when the
    engine has one or a touch of it came earlier in *items*.
    """
    from buyerjourney._core.protocols import QuarantineEntry  # noqa: PLC0415
    from buyerjourney._core.records import Action, Touch  # noqa: PLC0415

    seen: set[str] = set()
    for source, line, item in items:
        if isinstance(item, Touch):
            seen.add(item.lead_id)
        elif (
            isinstance(item, Action)
            and source in history
            and item.lead_id not in seen
            and item.lead_id not in engine.journeys
        ):
            reason = (
                f"lead {item.lead_id!r} has no journey yet, and an imported stage needs one "
                "(a touch creates it): ingest the leads in this command or before (or map "
                "attributes, whose touch comes first), then `buyerjourney quarantine --retry "
                f"--stage-history {source} --stage-columns ... --lateness ...` (a lateness "
                "that reaches back from the store's latest time to this entry's)"
            )
            yield source, line, QuarantineEntry(source, line, NO_JOURNEY, reason, repr(item)[:200])
            continue
        yield source, line, item


def _progress(items: Iterable[Located], *, enabled: bool) -> Iterable[Located]:
    if not enabled:
        return items
    from tqdm import tqdm  # noqa: PLC0415  (tqdm: a well-kept progress bar; off when not a TTY)

    bar: Iterable[Located] = tqdm(items, unit=" inputs", file=sys.stderr, disable=None, leave=False)
    return bar


def _run_ingest(args: argparse.Namespace) -> int:
    from buyerjourney._core.records import parse_time  # noqa: PLC0415
    from buyerjourney._pipeline import ingest  # noqa: PLC0415
    from buyerjourney._report import format_summary, summarize  # noqa: PLC0415

    if not args.files and not args.sample and not args.stage_history:
        raise CommandError(
            "give the files to ingest, --stage-history FILE, or --sample", usage=True
        )
    stage = _stage_options(args)
    pipeline = _pipeline(args, sample=args.sample)
    lateness = _lateness(args)
    inputs: Iterable[Located] = _inputs(args)
    if stage is not None:
        columns, importer = stage
        pipeline = _with_importer(pipeline, importer)
        inputs = _merged(inputs, _stage_inputs(args, pipeline.funnel, columns, importer))
    store = open_store(args.store)
    try:
        engine = _engine(pipeline, store, lateness)
        if stage is not None:
            inputs = _journeys_first(engine, inputs, set(args.stage_history))
        counts = ingest(engine, _progress(inputs, enabled=not args.no_progress))
        if args.until:
            engine.advance(parse_time(args.until, field="--until"))
        records = list(store.read())
        summary = summarize(pipeline.funnel, records)
    finally:
        store.close()
    if args.format == "json":
        payload = {
            "store": _name(args.store),
            "funnel": pipeline.funnel.name,
            **_counts(counts),
            "journeys": len(engine.journeys),
            "log_records": summary.records,
        }
        write_output(json.dumps(payload, indent=2) + "\n", None)
        return EXIT_OK
    lines = [_counts_line(counts), format_summary(summary)]
    if counts.quarantined:
        lines += ["", "quarantined (see `buyerjourney quarantine`):"]
        lines += [f"  {e.source}:{e.line}: {e.reason}" for e in counts.quarantined[:20]]
        if len(counts.quarantined) > 20:
            lines.append(f"  ... and {len(counts.quarantined) - 20} more")
    lines += ["", f"store {_name(args.store)}: {summary.records} records, "
              f"{len(engine.journeys)} journeys"]  # fmt: skip
    write_output("\n".join(lines) + "\n", None)
    return EXIT_OK


def _name(spec: str | None) -> str:
    value = spec or os.environ.get(STORE_ENV_VAR) or DEFAULT_STORE
    if "://" in value and "@" in value:  # never print a password
        scheme, _, rest = value.partition("://")
        value = f"{scheme}://{rest.rpartition('@')[2]}"
    return value


def _counts(counts: IngestCounts) -> dict[str, Any]:
    return {
        "read": counts.read,
        "applied": counts.applied,
        "duplicates": counts.duplicates,
        "refused": counts.refused,
        "quarantined": len(counts.quarantined),
        "records": counts.records,
        "late": counts.late,
        "nothing_new": counts.nothing_new,
    }


def _counts_line(counts: IngestCounts) -> str:
    head = (
        "nothing new: every input was applied before"
        if counts.nothing_new and counts.duplicates
        else "nothing applied"
        if counts.nothing_new
        else f"applied {counts.applied}"
    )
    return (
        f"{head} ({counts.read} read: {counts.applied} applied, {counts.duplicates} "
        f"duplicates, {counts.refused} refused, {len(counts.quarantined)} quarantined; "
        f"{counts.records} new records)"
    )


# ---------------------------------------------------------------- journeys


def add_journeys(subparsers: SubParsers) -> None:
    """Add ``buyerjourney journeys``."""
    parser = subparsers.add_parser(
        "journeys",
        help="look journeys up in a store: counts per stage, or one lead with its history",
        description=(
            "Without LEAD: how many journeys are in each stage, by owner. With LEAD: that "
            "lead's journey (stage, owner, score, time in each stage) and its history from "
            "the log. Reads the store's journeys snapshot; `buyerjourney rebuild` remakes it."
        ),
    )
    parser.add_argument("lead", nargs="?", metavar="LEAD", help="a lead id")
    _add_store_option(parser)
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.set_defaults(run=_run_journeys)


def _journey_dict(journey: Journey) -> dict[str, Any]:
    from buyerjourney._adapters.codec import journey_to_json  # noqa: PLC0415

    out: dict[str, Any] = json.loads(journey_to_json(journey))
    return out


def _run_journeys(args: argparse.Namespace) -> int:
    store = open_store(args.store)
    try:
        if args.lead is None:
            journeys = store.journeys()
            by_stage: dict[tuple[str, str], int] = {}
            for journey in journeys.values():
                key = (journey.stage, journey.owner)
                by_stage[key] = by_stage.get(key, 0) + 1
            if args.format == "json":
                payload = {
                    "journeys": len(journeys),
                    "stages": [
                        {"stage": s, "owner": o, "journeys": n}
                        for (s, o), n in sorted(by_stage.items())
                    ],
                }
                write_output(json.dumps(payload, indent=2) + "\n", None)
                return EXIT_OK
            lines = [f"{len(journeys)} journeys in {_name(args.store)}"]
            lines += [f"  {s:<24} {o:<14} {n:>8}" for (s, o), n in sorted(by_stage.items())]
            write_output("\n".join(lines) + "\n", None)
            return EXIT_OK
        journey = store.journey(args.lead)
        if journey is None:
            msg = f"no journey for lead {args.lead!r} in {_name(args.store)}"
            raise CommandError(msg)
        history = list(store.read(lead_id=args.lead))
    finally:
        store.close()
    if args.format == "json":
        payload = {
            "journey": _journey_dict(journey),
            "history": [record.to_dict() for record in history],
        }
        write_output(json.dumps(payload, indent=2, default=str) + "\n", None)
        return EXIT_OK
    lines = [
        f"lead {journey.lead_id}: {journey.stage} (owner {journey.owner}), score "
        f"{journey.score:g}, since {journey.stages[journey.stage].entered.isoformat()}",
        f"highest stage {journey.highest}; started {journey.created.isoformat()}; "
        f"{journey.version} changes",
        "",
        "history:",
    ]
    for record in history:
        what = record.kind.value
        if record.source or record.target:
            what += f" {record.source or ''} -> {record.target or ''}"
        if record.to_team and record.kind.value == "handoff":
            what += f" ({record.from_team} -> {record.to_team})"
        by = f" by {record.actor}" if record.actor.name != "system" else ""
        why = f": {record.reason}" if record.reason else ""
        lines.append(f"  {record.at.isoformat()}  {what}{by}{why}")
    write_output("\n".join(lines) + "\n", None)
    return EXIT_OK


# ---------------------------------------------------------------- rebuild


def add_rebuild(subparsers: SubParsers) -> None:
    """Add ``buyerjourney rebuild``."""
    parser = subparsers.add_parser(
        "rebuild",
        help="rebuild a store's journeys snapshot from its log (needs the store alone)",
        description=(
            "Fold the store's log from the start into every journey and replace the journeys "
            "snapshot with the result; print how many journeys were rebuilt and how many "
            "differed from the snapshot. Refuses a store another process has open."
        ),
    )
    _add_store_option(parser)
    _add_funnel_options(parser)
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.set_defaults(run=_run_rebuild)


def _run_rebuild(args: argparse.Namespace) -> int:
    from buyerjourney._core.journey import rebuild  # noqa: PLC0415

    pipeline = _pipeline(args)
    store = open_store(args.store)
    try:
        with store.exclusive():
            journeys = rebuild(pipeline.funnel, store.read())
            before = store.journeys()
            differed = sorted(
                lead
                for lead in set(journeys) | set(before)
                if journeys.get(lead) != before.get(lead)
            )
            store.replace_journeys(journeys)
    finally:
        store.close()
    if args.format == "json":
        payload = {"journeys": len(journeys), "differed": differed}
        write_output(json.dumps(payload, indent=2) + "\n", None)
    else:
        state = "all equal the snapshot" if not differed else f"{len(differed)} differed"
        write_output(f"rebuilt {len(journeys)} journeys from the log; {state}\n", None)
    return EXIT_OK


# ---------------------------------------------------------------- quarantine


def add_quarantine(subparsers: SubParsers) -> None:
    """Add ``buyerjourney quarantine``."""
    parser = subparsers.add_parser(
        "quarantine",
        help="list what did not land in a store, or retry it",
        description=(
            "List the inputs a store's ingests set aside (file, line, code, reason). With "
            "--retry, read those lines again from their files (fixed in place, or with "
            "another --pipeline), ingest them, and drop from the quarantine every entry that "
            "now lands or is a duplicate. Entries of a --stage-history file are read again "
            "through --stage-columns when that file is named again."
        ),
    )
    _add_store_option(parser)
    parser.add_argument("--retry", action="store_true", help="ingest the quarantined lines again")
    _add_funnel_options(parser)
    _add_reader_options(parser)
    _add_stage_history_options(parser)
    parser.add_argument(
        "--lateness",
        metavar="DURATION",
        help="with --retry: how far before the store's latest time a line may be and still "
        "land in time order (ISO-8601, e.g. P1D; default: none)",
    )
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.set_defaults(run=_run_quarantine)


def _run_quarantine(args: argparse.Namespace) -> int:
    if args.stage_history and not args.retry:
        raise CommandError("--stage-history is for --retry", usage=True)
    if args.lateness is not None and not args.retry:
        raise CommandError("--lateness is for --retry", usage=True)
    stage = _stage_options(args)
    store = open_store(args.store)
    try:
        entries = store.quarantined()
        if not args.retry:
            if args.format == "json":
                payload = [
                    {
                        "id": e.entry_id,
                        "source": e.source,
                        "line": e.line,
                        "code": e.code,
                        "reason": e.reason,
                        "text": e.text,
                    }
                    for e in entries
                ]
                write_output(json.dumps(payload, indent=2) + "\n", None)
            else:
                lines = [f"{len(entries)} quarantined in {_name(args.store)}"]
                lines += [
                    f"  #{e.entry_id} {e.source}:{e.line} [{e.code}] {e.reason}" for e in entries
                ]
                write_output("\n".join(lines) + "\n", None)
            return EXIT_OK
        released, still = _retry(args, store, entries, stage)
    finally:
        store.close()
    write_output(
        f"retried {released + still}: {released} landed, {still} still quarantined\n", None
    )
    return EXIT_OK if still == 0 else EXIT_FAILURE


def _retry(
    args: argparse.Namespace,
    store: SQLiteStore,
    entries: list[Any],
    stage: tuple[StageColumns, Actor] | None = None,
) -> tuple[int, int]:
    """Ingest the quarantined lines again; release those that land. Returns (landed, kept).

    The lines of a ``--stage-history`` file are read again through the stage
    mapping, by the importer; the others through the touch readers. An entry
    whose line fails again for another reason is replaced by the new entry
    (the store keeps that one) and counts as kept, not landed.
    """
    from buyerjourney._pipeline import ingest  # noqa: PLC0415

    wanted: dict[str, dict[int, list[Any]]] = {}
    for entry in entries:
        if entry.source != _SAMPLE and entry.line > 0 and os.path.isfile(entry.source):
            wanted.setdefault(entry.source, {}).setdefault(entry.line, []).append(entry)
    pipeline = _pipeline(args)
    history: set[str] = set()
    if stage is not None:
        pipeline = _with_importer(pipeline, stage[1])
        history = {os.path.realpath(name) for name in args.stage_history}
    engine = _engine(pipeline, store, _lateness(args))
    released: list[int] = []
    replaced = 0
    for source, lines in wanted.items():
        if stage is not None and os.path.realpath(source) in history:
            staged = _stage_inputs(args, pipeline.funnel, *stage, sources=(source,))
            found: Iterable[Located] = _journeys_first(engine, staged, {source})
        else:
            found = _read_file(args, source)
        items = [item for item in found if item[1] in lines]
        counts = ingest(engine, items)
        again: dict[int, set[tuple[str, str]]] = {}
        for failed in counts.quarantined:
            if failed.source == source:
                again.setdefault(failed.line, set()).add((failed.code, failed.text))
        read_again = {item[1] for item in items}
        for line, group in lines.items():
            if line not in read_again:
                continue  # the line is no longer in the file: keep its entries
            failures = again.get(line, set())
            for entry in group:  # a stage-history row may hold several entries
                if (entry.code, entry.text) not in failures:
                    released.append(entry.entry_id)  # landed (or a duplicate), or kept anew
                    if failures:  # the line failed again, for another reason: kept anew
                        replaced += 1
    store.release(released)
    return len(released) - replaced, len(entries) - len(released) + replaced
