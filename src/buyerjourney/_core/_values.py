"""Small helpers shared by the value objects."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any


def frozen_mapping(value: Mapping[str, Any]) -> Mapping[str, Any]:
    """A read-only copy of *value*: attrs converter for mapping fields of frozen classes."""
    return MappingProxyType(dict(value))
