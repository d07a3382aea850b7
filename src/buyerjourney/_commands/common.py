"""What every ``buyerjourney`` subcommand shares: errors, funnel and pipeline arguments, output.

The subcommands live in :mod:`buyerjourney.cli` and in the modules beside
this one; each imports what it needs from here, so that no command module
imports another.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from buyerjourney import presets
from buyerjourney._adapters.files import (
    load_funnel,
    load_owner_rules,
    load_pipeline,
    load_unchecked_owner_rules,
)
from buyerjourney._core.protocols import Hooks
from buyerjourney.errors import UnknownHook, UnknownPreset

if TYPE_CHECKING:
    from buyerjourney._core.funnel import Funnel
    from buyerjourney._core.owners import OwnerRules
    from buyerjourney._pipeline import Pipeline

    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]

HOOKS_ATTRIBUTE = "hooks"
"""The module-level name a ``--hooks`` module binds to its :class:`~buyerjourney.Hooks`."""

PROG = "buyerjourney"
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

_FUNNEL_SUFFIXES = (".toml", ".json")
FUNNEL_ARG_HELP = "a preset name (see `buyerjourney presets`) or a .toml / .json funnel file"


class CommandError(Exception):
    """A failure of the command itself, reported as a message without traceback.

    Args:
        message: What went wrong and what to do.
        usage: Whether it is a usage error (exit status 2) rather than a
            failure (exit status 1).

    Attributes:
        usage: Whether it is a usage error.
    """

    def __init__(self, message: str, *, usage: bool = False) -> None:
        super().__init__(message)
        self.usage = usage


def load_funnel_arg(value: str) -> Funnel:
    """Return the funnel a ``FILE|PRESET`` argument names.

    A preset name wins; anything with a ``.toml`` / ``.json`` suffix, or any
    existing path, is read as a funnel file.

    Raises:
        UnknownPreset: *value* is neither a preset nor a file; the message
            lists the presets.
        FunnelFormatError: The file is malformed or has another suffix.
        InvalidFunnel: The file describes a funnel with problems.
        OSError: The file cannot be read.
    """
    if value in presets.names():
        return presets.get(value)
    path = Path(value)
    if path.suffix.lower() in _FUNNEL_SUFFIXES or path.exists():
        return load_funnel(path)
    raise UnknownPreset(value, presets.names())


def load_hooks_module(value: str) -> Hooks:
    """Import the module a ``--hooks`` option names and return its guard registry.

    The contract: *value* is a module name (``my_hooks`` or
    ``my_pkg.hooks``), imported with the current directory first on
    ``sys.path``, or the path of a ``.py`` file (``hooks/guards.py``). The
    module must bind, at module level, the name ``hooks`` (see
    :data:`HOOKS_ATTRIBUTE`) to a :class:`~buyerjourney.Hooks` holding every
    guard the funnel names::

        # my_hooks.py
        from buyerjourney import Context, Hooks

        hooks = Hooks()


        @hooks.guard("is_enterprise")
        def is_enterprise(ctx: Context) -> bool:
            return ctx.attributes.get("employees", 0) >= 1000

    Importing the module runs its code, once per command: name only modules
    you trust. A funnel or pipeline file never makes the command import code.

    Args:
        value: The module name or ``.py`` path.

    Returns:
        The module's ``hooks``.

    Raises:
        CommandError: The module cannot be found or imported, raised while
            being imported, or does not bind ``hooks`` to a ``Hooks``.
    """
    is_path = value.endswith(".py") or os.sep in value or "/" in value
    try:
        module = _import_path(value) if is_path else _import_name(value)
    except CommandError:
        raise
    except Exception as exc:
        msg = f"--hooks {value}: importing the module raised {type(exc).__name__}: {exc}"
        raise CommandError(msg) from None
    hooks = getattr(module, HOOKS_ATTRIBUTE, None)
    if not isinstance(hooks, Hooks):
        found = (
            "does not define it"
            if hooks is None
            else f"binds it to {type(hooks).__name__} {hooks!r:.60}"
        )
        msg = (
            f"--hooks {value}: the module must bind {HOOKS_ATTRIBUTE!r} to a buyerjourney.Hooks "
            f"holding the guards (hooks = Hooks(); @hooks.guard('name') ...), but it {found}"
        )
        raise CommandError(msg)
    return hooks


def _import_path(value: str) -> Any:
    path = Path(value)
    if not path.is_file():
        raise CommandError(f"--hooks {value}: no such file")
    spec = importlib.util.spec_from_file_location(f"_buyerjourney_hooks_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise CommandError(f"--hooks {value}: cannot import a module from this file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _import_name(value: str) -> Any:
    if not all(part.isidentifier() for part in value.split(".")):
        msg = f"--hooks {value}: not a module name (such as my_hooks) nor a .py file"
        raise CommandError(msg)
    sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(value)
    except ModuleNotFoundError as exc:
        if exc.name is not None and value.startswith(exc.name):
            msg = (
                f"--hooks {value}: no module named {exc.name!r} in the current directory "
                "or on sys.path; give the module name or the path of its .py file"
            )
            raise CommandError(msg) from None
        raise
    finally:
        sys.path.remove(os.getcwd())


def add_pipeline_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--pipeline",
        metavar="FILE",
        help="a pipeline file (.toml or .json): funnel, owners, scorer, policy, thresholds",
    )
    parser.add_argument(
        "--hooks",
        metavar="MODULE",
        help="a module name or .py file that binds `hooks` to a buyerjourney.Hooks "
        "registering the funnel's guards (its code runs)",
    )


def pipeline_arg(
    args: argparse.Namespace, funnel_arg: str | None, *, check_owners: bool
) -> Pipeline:
    """The pipeline the options name: ``--pipeline``, or the funnel with the default pipeline.

    Raises:
        CommandError: ``--pipeline`` is combined with a funnel or ``--owners``
            (a usage error), or the ``--hooks`` module cannot be used.
    """
    from buyerjourney._checks import funnel_owners  # noqa: PLC0415  (keep `--help` fast)
    from buyerjourney._pipeline import default_pipeline  # noqa: PLC0415

    # Usage first, so that a usage error imports no --hooks module.
    if args.pipeline:
        if funnel_arg is not None or args.owners:
            given = "a funnel" if funnel_arg is not None else "--owners"
            msg = (
                f"--pipeline gives the funnel and the owner rules; it cannot be combined with "
                f"{given} (put them in the pipeline file)"
            )
            raise CommandError(msg, usage=True)
        hooks = load_hooks_module(args.hooks) if args.hooks else None
        return load_pipeline(args.pipeline, hooks=hooks, check_owners=check_owners)
    if funnel_arg is None:
        raise CommandError("give a funnel (FILE|PRESET) or --pipeline FILE", usage=True)
    hooks = load_hooks_module(args.hooks) if args.hooks else None
    funnel = load_funnel_arg(funnel_arg)
    owners: OwnerRules | None = None
    if args.owners:
        load = load_owner_rules if check_owners else load_unchecked_owner_rules
        owners = load(args.owners, funnel)
    elif not check_owners:
        owners = funnel_owners(funnel)
    return default_pipeline(funnel, owners=owners, hooks=hooks)


def guard_hint(exc: UnknownHook) -> CommandError:
    """*exc*, a guard nobody registered, with what to do on the command line."""
    return CommandError(
        f"{exc} On the command line, pass --hooks MODULE, a module that binds `hooks` to a "
        "buyerjourney.Hooks registering it (see `buyerjourney replay --help`)."
    )


def describe_error(exc: BaseException) -> str:
    """A message for an expected error: no traceback, the file name included."""
    if isinstance(exc, OSError) and exc.filename is not None:
        reason = exc.strerror or str(exc)
        return f"{os.fsdecode(exc.filename)}: cannot open: {reason}"
    return str(exc)


def error(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr)


def write_output(text: str, output: str | None) -> None:
    """Write *text* to the file *output*, or to standard output if it is ``None``."""
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    with open(output, "w", encoding="utf-8", newline="\n") as file:
        file.write(text)


def silence_stdout() -> None:
    """After a broken pipe, point stdout at devnull so exiting does not raise again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        return
