"""Pin the public face: every public module's ``__all__``, derived from the module itself.

As httpx does: the public names of a module are exactly the names it binds
that do not start with ``_`` (submodules aside), and those are exactly its
``__all__``. Every public class and function has its own docstring. The
top-level list is also spelled out, so that adding or removing a name is
a deliberate change.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import pkgutil
import types

import pytest

import buyerjourney

PUBLIC_MODULES = [
    "buyerjourney",
    "buyerjourney.errors",
    "buyerjourney.analytics",
    "buyerjourney.presets",
    "buyerjourney.scoring",
    "buyerjourney.policies",
    "buyerjourney.bulk",
    "buyerjourney.readers",
    "buyerjourney.spark",
    "buyerjourney.dask",
    "buyerjourney.testing",
    "buyerjourney.testing.conformance",
    "buyerjourney.testing.stores",
    "buyerjourney.testing.harness",
    "buyerjourney.testing.oracle",
    "buyerjourney.testing.strategies",
    "buyerjourney.testing.verify",
    "buyerjourney.testing.pytest_plugin",
]

EXPECTED_TOP_LEVEL = sorted(
    [
        "Action",
        "ActionRefused",
        "Actor",
        "AllOf",
        "AnyOf",
        "AttributeRule",
        "BUILTIN_TEAMS",
        "BuyerJourneyError",
        "Candidate",
        "CombinedScorer",
        "CompiledFunnel",
        "Condition",
        "Context",
        "CorruptLog",
        "DEFAULT_POINTS",
        "Decision",
        "Direction",
        "Duplicate",
        "Engine",
        "FileFormat",
        "FitCriterion",
        "FitGrader",
        "Funnel",
        "FunnelFormatError",
        "FunnelMachine",
        "Guard",
        "HookError",
        "Hooks",
        "IngestCounts",
        "IngestReport",
        "InvalidAction",
        "InvalidFunnel",
        "InvalidOwnerRules",
        "InvalidTouch",
        "Journey",
        "Lead",
        "LinearDecay",
        "Listener",
        "ListenerFailed",
        "MARKETING",
        "MatrixPolicy",
        "MemoryStore",
        "MissingExtra",
        "ModeNotPossible",
        "OPS",
        "Op",
        "Overdue",
        "OwnerRule",
        "OwnerRules",
        "PIPELINE_SCHEMA",
        "Pipeline",
        "PipelineFormatError",
        "PointsRule",
        "PointsScorer",
        "Policy",
        "PostgresStore",
        "Problem",
        "QuarantineEntry",
        "Quarantined",
        "RESERVED_NAMES",
        "ReasonRequired",
        "Record",
        "RecordKind",
        "ReplaySummary",
        "RunResult",
        "SALES",
        "SCHEMA",
        "SCHEMA_VERSION",
        "SQLiteStore",
        "SYSTEM",
        "Score",
        "ScoreGroup",
        "ScoreItem",
        "Scorer",
        "Stage",
        "StageKind",
        "StageRow",
        "StageTime",
        "Store",
        "StoreConflict",
        "StoreError",
        "StoreInUse",
        "StoredLog",
        "ThresholdPolicy",
        "TimeWindow",
        "Touch",
        "TouchKindPolicy",
        "Transition",
        "TransitionNotAllowed",
        "UnknownHook",
        "UnknownPreset",
        "UnknownStage",
        "WEEKDAYS",
        "WorkingCalendar",
        "__version__",
        "action_key",
        "apply",
        "build_machine_class",
        "compile_funnel",
        "default_pipeline",
        "default_policy",
        "default_scorer",
        "dump_funnel",
        "dumps_funnel",
        "effective_records",
        "errors",
        "evaluate_guard",
        "find_problems",
        "format_summary",
        "funnel_machine",
        "ingest",
        "load_funnel",
        "load_owner_rules",
        "load_pipeline",
        "loads_funnel",
        "loads_pipeline",
        "located",
        "owner_colours",
        "parse_time",
        "policies",
        "presets",
        "read_jsonl_records",
        "read_stream",
        "rebuild",
        "run",
        "save_owner_rules",
        "scoring",
        "summarize",
        "to_dot",
        "to_mermaid",
        "to_svg",
        "write_jsonl_records",
    ]
)


# Faces re-export what private modules define; the others define what they export.
FACES = {
    "buyerjourney",
    "buyerjourney.analytics",
    "buyerjourney.scoring",
    "buyerjourney.policies",
    "buyerjourney.bulk",
    "buyerjourney.readers",
    "buyerjourney.testing",
}


def _defined_public(module: types.ModuleType) -> set[str]:
    """Public classes and functions this module defines (a face: that its private modules do)."""
    name = module.__name__
    names = set()
    for attr, value in vars(module).items():
        if attr.startswith("_") or not (inspect.isclass(value) or inspect.isfunction(value)):
            continue
        home = getattr(value, "__module__", "") or ""
        private_home = home.startswith("buyerjourney.") and any(
            part.startswith("_") for part in home.split(".")[1:]
        )
        if home == name or (name in FACES and private_home):
            names.add(attr)
    return names


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_all_lists_every_public_definition_and_only_real_names(module_name: str) -> None:
    module = importlib.import_module(module_name)
    exported = set(module.__all__)
    assert len(exported) == len(module.__all__), "duplicates in __all__"
    assert _defined_public(module) - exported == set(), "public but not in __all__"
    assert [n for n in module.__all__ if not hasattr(module, n)] == []


@pytest.mark.parametrize("module_name", sorted(FACES))
def test_faces_bind_nothing_public_beyond_all(module_name: str) -> None:
    """httpx's rule for a face: every name it binds without a leading ``_`` is exported."""
    module = importlib.import_module(module_name)
    bound = {
        n
        for n, v in vars(module).items()
        if not n.startswith("_") and n != "annotations" and not inspect.ismodule(v)
    }
    bound |= {n for n in module.__all__ if inspect.ismodule(getattr(module, n))}
    assert sorted(bound) == sorted(set(module.__all__) - {"__version__"})


def test_top_level_names_are_pinned() -> None:
    assert sorted(buyerjourney.__all__) == EXPECTED_TOP_LEVEL


def _documented(obj: object) -> bool:
    if inspect.isclass(obj):
        return bool(obj.__dict__.get("__doc__") and obj.__doc__.strip())
    if inspect.isfunction(obj) or inspect.ismodule(obj):
        return bool(obj.__doc__ and obj.__doc__.strip())
    return True  # data: constants and type aliases are documented in the module's source


@pytest.mark.parametrize(
    ("module_name", "name"),
    [(m, n) for m in PUBLIC_MODULES for n in importlib.import_module(m).__all__],
)
def test_public_names_resolve_and_are_documented(module_name: str, name: str) -> None:
    obj = getattr(importlib.import_module(module_name), name)
    assert _documented(obj), f"{module_name}.{name} has no docstring of its own"


def test_every_other_module_is_private() -> None:
    """A module is either listed as public above or named with a leading underscore."""
    stray = []
    for info in pkgutil.walk_packages(buyerjourney.__path__, "buyerjourney."):
        parts = info.name.split(".")
        if info.name in PUBLIC_MODULES or any(p.startswith("_") for p in parts[1:]):
            continue
        if info.name in ("buyerjourney.cli",):  # the console script's entry point
            continue
        stray.append(info.name)
    assert stray == []


def test_version_matches_installed_metadata() -> None:
    assert buyerjourney.__version__ == importlib.metadata.version("buyerjourney")
