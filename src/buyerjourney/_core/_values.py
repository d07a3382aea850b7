"""Frozen all the way down: the converters of the value objects' mapping fields.

A touch's attributes, a journey's attributes and a record's data may hold
nested lists and dicts (a scorer's breakdown, an attribute that is a list of
products). :func:`freeze` turns mappings into read-only
:class:`types.MappingProxyType` views over copies and lists into tuples, at
every depth, so nothing a caller or a hook holds can change a journey or the
log after the fact; :func:`thaw` gives plain dicts and lists back for JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

_SCALARS = (str, int, float, bool, type(None))


def freeze(value: Any) -> Any:
    """*value* with every mapping made read-only and every list or set a tuple or frozenset."""
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, Mapping):
        if type(value) is MappingProxyType and all(type(v) in _SCALARS for v in value.values()):
            return value  # frozen already
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        frozen = tuple([freeze(v) for v in value])
        if type(value) is tuple and all(a is b for a, b in zip(frozen, value, strict=True)):
            return value  # frozen already: keep the very same tuple
        return frozen
    if isinstance(value, (set, frozenset)):
        return frozenset(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """The plain-JSON form of a frozen *value*: dicts and lists at every depth."""
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [thaw(v) for v in value]
    return value


def frozen_mapping(value: Mapping[str, Any]) -> Mapping[str, Any]:
    """A read-only deep copy of *value*: attrs converter for mapping fields of frozen classes."""
    frozen: Mapping[str, Any] = freeze(value)
    return frozen
