"""Pin the package's public API: ``buyerjourney.__all__`` and its documentation."""

from __future__ import annotations

import importlib.metadata

import pytest

import buyerjourney

# ---------------------------------------------------------------------------
# EXPECTED_PUBLIC_API: the exact contents of ``buyerjourney.__all__``.
# Update this list deliberately whenever a public name is added or removed.
# ---------------------------------------------------------------------------
EXPECTED_PUBLIC_API = [
    "MARKETING",
    "SALES",
    "SYSTEM",
    "Action",
    "ActionRefused",
    "Actor",
    "AllOf",
    "AnyOf",
    "AttributeRule",
    "BuyerJourneyError",
    "CombinedScorer",
    "CompiledFunnel",
    "Condition",
    "Context",
    "CorruptLog",
    "Decision",
    "Direction",
    "Engine",
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
    "InvalidOwnerRules",
    "InvalidTouch",
    "Journey",
    "Lead",
    "LinearDecay",
    "MatrixPolicy",
    "MissingExtra",
    "Overdue",
    "OwnerRule",
    "OwnerRules",
    "Pipeline",
    "PointsRule",
    "PointsScorer",
    "Policy",
    "Problem",
    "Quarantined",
    "ReasonRequired",
    "Record",
    "RecordKind",
    "SQLiteStore",
    "Score",
    "ScoreGroup",
    "ScoreItem",
    "Scorer",
    "Stage",
    "StageKind",
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
    "__version__",
    "build_machine_class",
    "compile_funnel",
    "default_pipeline",
    "dump_funnel",
    "dumps_funnel",
    "find_problems",
    "funnel_machine",
    "load_funnel",
    "loads_funnel",
    "presets",
    "rebuild",
]

# Names in __all__ that are data, not documented objects.
UNDOCUMENTED_OK = {"__version__"}


def test_all_matches_expected() -> None:
    assert sorted(buyerjourney.__all__) == sorted(EXPECTED_PUBLIC_API)


def test_all_has_no_duplicates() -> None:
    assert len(set(buyerjourney.__all__)) == len(buyerjourney.__all__)


@pytest.mark.parametrize("name", sorted(buyerjourney.__all__))
def test_public_name_resolves_and_is_documented(name: str) -> None:
    obj = getattr(buyerjourney, name)  # raises AttributeError if missing
    if name in UNDOCUMENTED_OK:
        return
    doc = getattr(obj, "__doc__", None)
    assert doc is not None
    assert doc.strip(), f"buyerjourney.{name} has an empty docstring"


def test_version_matches_installed_metadata() -> None:
    assert buyerjourney.__version__ == importlib.metadata.version("buyerjourney")
