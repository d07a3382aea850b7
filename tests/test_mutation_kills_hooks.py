"""Registration and evaluation errors of the guard hooks, found by mutation testing.

The other tests check that a bad guard is refused; these check the exact error (its
type, message and attributes) and the name a decorated guard is registered under.
See docs/mutation.md.
"""

from __future__ import annotations

from functools import partial

import pytest

from buyerjourney._core.protocols import Context, Hooks, evaluate_guard
from buyerjourney.errors import HookError, UnknownHook


def always(ctx: Context) -> bool:
    return True


@pytest.mark.parametrize("name", ["", 5, None])
def test_a_guard_name_must_be_a_non_empty_string(name: object) -> None:
    with pytest.raises(TypeError) as info:
        Hooks().add_guard(name, always)  # type: ignore[arg-type]
    assert str(info.value) == f"a guard name must be a non-empty str (got {name!r})"


def test_a_guard_must_be_callable() -> None:
    with pytest.raises(TypeError) as info:
        Hooks().add_guard("hot", 42)  # type: ignore[arg-type]
    assert str(info.value) == "guard 'hot' must be callable (got 42 that is a int)"


def test_the_decorator_registers_under_the_function_name_or_the_given_one() -> None:
    hooks = Hooks()
    assert hooks.guard()(always) is always
    hooks.guard("ready")(always)
    assert dict(hooks.guards) == {"always": always, "ready": always}


def test_the_decorator_refuses_a_callable_without_a_name() -> None:
    nameless = partial(always)
    with pytest.raises(TypeError) as info:
        Hooks().guard()(nameless)
    assert str(info.value) == "a guard name must be a non-empty str (got '')"
    hooks = Hooks()
    hooks.guard("named")(nameless)
    assert list(hooks.guards) == ["named"]


def test_unknown_guards_are_reported_as_guards() -> None:
    with pytest.raises(UnknownHook) as info:
        Hooks({"hot": always}).resolve(["cold", "hot", "warm"])
    assert (info.value.kind, info.value.names, info.value.known) == (
        "guard",
        ("cold", "warm"),
        ("hot",),
    )
    assert str(info.value) == (
        "no guard registered under 'cold', 'warm' (registered: hot). "
        "Register it with `hooks.add_guard(name, fn)`, or fix the name in the funnel."
    )


@pytest.mark.parametrize(("lead_id", "subject"), [("L1", "L1"), ("", None)])
def test_a_non_bool_answer_names_the_lead_and_the_type(lead_id: str, subject: object) -> None:
    with pytest.raises(HookError) as info:
        evaluate_guard("g", lambda ctx: 1, Context(lead_id=lead_id))  # type: ignore[arg-type,return-value]
    assert (info.value.hook, info.value.subject, info.value.received) == ("g", subject, 1)
    about = f" for {subject!r}" if subject else ""
    assert str(info.value) == f"hook 'g'{about}: guard must return a bool (got 1 that is a int)"


@pytest.mark.parametrize(("lead_id", "subject"), [("L1", "L1"), ("", None)])
def test_a_raising_guard_names_the_lead(lead_id: str, subject: object) -> None:
    def broken(ctx: Context) -> bool:
        raise KeyError("segment")

    with pytest.raises(HookError) as info:
        evaluate_guard("g", broken, Context(lead_id=lead_id))
    assert info.value.subject == subject
    about = f" for {subject!r}" if subject else ""
    assert str(info.value) == f"hook 'g'{about}: guard raised KeyError: 'segment'"
