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
    "buyerjourney.testing",
    "buyerjourney.testing.conformance",
    "buyerjourney.testing.harness",
    "buyerjourney.testing.oracle",
    "buyerjourney.testing.strategies",
    "buyerjourney.testing.verify",
    "buyerjourney.testing.pytest_plugin",
]

EXPECTED_TOP_LEVEL = sorted(
    [
        "BUILTIN_TEAMS",
        "DEFAULT_POINTS",
        "MARKETING",
        "OPS",
        "PIPELINE_SCHEMA",
        "RESERVED_NAMES",
        "SALES",
        "SCHEMA",
        "SYSTEM",
        "Action",
        "ActionRefused",
        "Actor",
        "AllOf",
        "AnyOf",
        "AttributeRule",
        "BuyerJourneyError",
        "Candidate",
        "CombinedScorer",
        "CompiledFunnel",
        "Condition",
        "Context",
        "CorruptLog",
        "Decision",
        "Direction",
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
        "IngestReport",
        "InvalidFunnel",
        "InvalidAction",
        "InvalidOwnerRules",
        "InvalidTouch",
        "ListenerFailed",
        "Journey",
        "Lead",
        "LinearDecay",
        "Listener",
        "MatrixPolicy",
        "MissingExtra",
        "ModeNotPossible",
        "Op",
        "Overdue",
        "OwnerRule",
        "OwnerRules",
        "Pipeline",
        "PipelineFormatError",
        "PointsRule",
        "PointsScorer",
        "Policy",
        "Problem",
        "Quarantined",
        "ReasonRequired",
        "Record",
        "RecordKind",
        "ReplaySummary",
        "RunResult",
        "SQLiteStore",
        "StoreError",
        "StoredLog",
        "Store",
        "MemoryStore",
        "SCHEMA_VERSION",
        "Score",
        "ScoreGroup",
        "ScoreItem",
        "Scorer",
        "Stage",
        "StageKind",
        "StageRow",
        "StageTime",
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
        "apply",
        "build_machine_class",
        "compile_funnel",
        "default_pipeline",
        "default_policy",
        "default_scorer",
        "dump_funnel",
        "dumps_funnel",
        "errors",
        "evaluate_guard",
        "find_problems",
        "format_summary",
        "funnel_machine",
        "load_funnel",
        "load_owner_rules",
        "load_pipeline",
        "loads_funnel",
        "loads_pipeline",
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
