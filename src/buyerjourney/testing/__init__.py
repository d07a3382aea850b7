"""Hypothesis strategies for testing code built on buyerjourney (the ``testing`` extra).

Install with ``pip install 'buyerjourney[testing]'``. Importing this package
registers :func:`funnels` and :func:`contexts` as Hypothesis's strategies for
:class:`~buyerjourney.Funnel` and :class:`~buyerjourney.Context`, so
``st.from_type(Funnel)`` and ``@given(funnel=...)`` with type inference work.

The core of buyerjourney never imports this package.
"""

from __future__ import annotations

try:
    from hypothesis import strategies as _st
except ImportError as exc:  # pragma: no cover  (the testing extra is missing)
    from ..errors import MissingExtra

    raise MissingExtra("buyerjourney.testing", "testing") from exc

from ..funnel import Funnel
from ..hooks import Context
from .strategies import (
    GUARD_NAMES,
    OWNERS,
    SCORE_THRESHOLDS,
    UNKNOWN_EVENTS,
    contexts,
    event_sequences,
    funnels,
    standard_hooks,
)

__all__ = [
    "GUARD_NAMES",
    "OWNERS",
    "SCORE_THRESHOLDS",
    "UNKNOWN_EVENTS",
    "contexts",
    "event_sequences",
    "funnels",
    "standard_hooks",
]

_st.register_type_strategy(Funnel, funnels())
_st.register_type_strategy(Context, contexts())
