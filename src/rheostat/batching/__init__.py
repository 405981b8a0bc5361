"""Batching: pure policies deciding when a device releases a batch (mechanism in devices)."""

from rheostat.batching.policy import (
    BatchDecision,
    BatchPolicy,
    DeadlineAwarePolicy,
    FixedSizePolicy,
    MaxDelayPolicy,
    QueuedRequest,
    hopeless,
    make_policy,
)

__all__ = [
    "BatchDecision",
    "BatchPolicy",
    "DeadlineAwarePolicy",
    "FixedSizePolicy",
    "MaxDelayPolicy",
    "QueuedRequest",
    "hopeless",
    "make_policy",
]
