"""The exception tree: one root, built-in bases, context attributes, helpful messages."""

from __future__ import annotations

import inspect

import pytest

from buyerjourney import errors
from buyerjourney._core.records import Actor


def test_every_exception_derives_from_the_root_and_is_documented() -> None:
    classes = [
        obj
        for name, obj in vars(errors).items()
        if inspect.isclass(obj) and issubclass(obj, Exception) and name in errors.__all__
    ]
    assert len(classes) == len(errors.__all__) - 1  # Problem is a value, not an exception
    for cls in classes:
        assert issubclass(cls, errors.BuyerJourneyError)
        assert cls.__doc__
        assert cls.__name__ in (errors.__doc__ or ""), f"{cls.__name__} missing from the tree"


@pytest.mark.parametrize(
    ("error", "builtin", "fragments"),
    [
        (
            errors.UnknownStage("x", ["a", "b"], funnel_name="f"),
            KeyError,
            ["'x' is not a stage of funnel 'f'", "expected one of a, b"],
        ),
        (errors.UnknownPreset("x", ["seed"]), KeyError, ["no preset named 'x'", "seed"]),
        (
            errors.UnknownHook("guard", ["g"], []),
            LookupError,
            ["no guard registered under 'g'", "hooks.add_guard"],
        ),
        (
            errors.TransitionNotAllowed("win", "mql", ["hand_off"]),
            ValueError,
            ["'win' is not allowed from stage 'mql'", "hand_off"],
        ),
        (errors.TransitionNotAllowed("win", "won", []), ValueError, ["has no way out"]),
        (
            errors.ReasonRequired("nurture", "mql", "inquiry"),
            ValueError,
            ["needs a reason", "reason='...'"],
        ),
        (
            errors.HookError("score", "bad", subject="t1", received=1),
            RuntimeError,
            ["hook 'score' for 't1': bad"],
        ),
        (
            errors.ActionRefused("L1", "accept", Actor("mia", "marketing"), "wrong team"),
            PermissionError,
            ["mia (marketing) may not 'accept' lead 'L1': wrong team"],
        ),
        (
            errors.InvalidTouch("at", "2024", "aware", position=3),
            ValueError,
            ["record 3: touch field 'at' must be aware (got '2024' that is a str)"],
        ),
        (
            errors.MissingExtra("SVG diagrams", "diagrams"),
            ImportError,
            ["pip install 'buyerjourney[diagrams]'"],
        ),
        (
            errors.FunnelFormatError("bad", source="f.toml", location="stages[0]"),
            ValueError,
            ["f.toml: stages[0]: bad"],
        ),
        (errors.InvalidOwnerRules(["gap"]), ValueError, ["1 problem(s)", "- gap"]),
    ],
)
def test_messages_say_what_was_wrong(
    error: errors.BuyerJourneyError, builtin: type[Exception], fragments: list[str]
) -> None:
    assert isinstance(error, builtin)
    for fragment in fragments:
        assert fragment in str(error)
