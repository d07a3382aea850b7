"""Handoff policies: what decides, after each touch, whether a journey moves.

This is the public face of policies; the implementation lives in a private
module.
"""

from buyerjourney._core.policies import (
    ANY_STAGE,
    CELLS,
    POLICY_GROUP,
    AllOf,
    AnyOf,
    Decision,
    MatrixPolicy,
    Policy,
    ThresholdPolicy,
    TouchKindPolicy,
    available_policies,
    checked_decision,
    load_policy,
    stages_allowing,
)

__all__ = [
    "ANY_STAGE",
    "CELLS",
    "POLICY_GROUP",
    "AllOf",
    "AnyOf",
    "Decision",
    "MatrixPolicy",
    "Policy",
    "ThresholdPolicy",
    "TouchKindPolicy",
    "available_policies",
    "checked_decision",
    "load_policy",
    "stages_allowing",
]
