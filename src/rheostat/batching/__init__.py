"""Batching: pure policies deciding when a device releases a batch (mechanism in devices)."""

from rheostat.batching.policy import (
    AimdPolicy,
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
    "AimdPolicy",
    "BatchDecision",
    "BatchPolicy",
    "DeadlineAwarePolicy",
    "FixedSizePolicy",
    "MaxDelayPolicy",
    "QueuedRequest",
    "hopeless",
    "make_policy",
]
