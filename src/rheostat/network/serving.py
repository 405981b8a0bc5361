"""A family's client-mapping options from its config and profiles.

`family_options` (a family's variants) and `option_cost` (one variant, which the simulator
calls) are pure; `engine_registry` wires a `ClientRegistry` to a live engine: the variants
loaded now, their load-time profiles, and the devices hosting the family.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from rheostat.network.clients import ClientRegistry, OptionCost, by_quality
from rheostat.profiling import LatencyProfile
from rheostat.repository.schema import FamilyConfig, InputKind

if TYPE_CHECKING:
    from rheostat.engine import Engine

__all__ = [
    "COST_BATCH",
    "HEADROOM",
    "SERVER_SHARE",
    "engine_registry",
    "family_options",
    "image_options",
    "option_cost",
]

HEADROOM = 0.25
"""Device capacity the client mapping keeps free (as the planner keeps): profiles are taken
on idle cores, and the front end shares the machine. The registry further scales what it
plans with by what the server delivers (AIMD on missed deadlines)."""

COST_BATCH = 2
"""A frame's device cost is taken at this batch size: frames from many clients meet in the
queues, but a 100-ms SLO leaves no time to wait for big batches."""

SERVER_SHARE = 0.9
"""The share of a client's end-to-end SLO by which the server answers (less the round trip
and the upload): the rest is for what the client's clock sees and the server's does not
(connecting, encoding and sending, reading the answer) on a busy client."""


def family_options(
    config: FamilyConfig,
    accuracy: Mapping[str, float],
    profiles: Mapping[str, Sequence[LatencyProfile]],
) -> list[OptionCost]:
    """The options of every variant with a profile: an image variant at its input size (the
    shorter side its preprocessing resizes to), once per JPEG quality it was scored at (or
    once, at the client's own quality), a tensor variant at its tensor's bytes. A variant's
    latency and cost are its slowest device's."""
    options = []
    for name, variant in config.variants.items():
        measured = profiles.get(name)
        if not measured:
            continue
        score = accuracy.get(name, variant.accuracy)
        if config.input_kind is InputKind.IMAGE and variant.preprocessing is not None:
            size = variant.preprocessing.resize_shorter_px
            options += image_options(name, size, score, variant.jpeg_accuracy, measured)
        else:
            spec = variant.input
            frame_bytes = math.prod(abs(d) for d in spec.dims) * spec.numpy_dtype.itemsize
            options.append(option_cost(name, 0, score, measured, frame_bytes))
    return options


def image_options(
    name: str,
    size_px: int,
    accuracy: float,
    jpeg_accuracy: Mapping[int, float],
    profiles: Sequence[LatencyProfile],
) -> list[OptionCost]:
    """An image variant's options: one per JPEG quality it was scored at, with that
    accuracy; none scored, one at the client's own quality (`accuracy`)."""
    qualities = by_quality(accuracy, jpeg_accuracy)
    return [option_cost(name, size_px, a, profiles, quality=q) for q, a in qualities.items()]


def option_cost(
    name: str,
    size_px: int,
    accuracy: float,
    profiles: Sequence[LatencyProfile],
    frame_bytes: int | None = None,
    *,
    quality: int | None = None,
) -> OptionCost:
    """A variant's option on the slowest of the devices whose `profiles` are given: a frame
    runs in a batch of COST_BATCH (its latency, and how long the batch holds the device) and
    costs its share of it. The wait for a batch in flight is the mapping's (`head_of_line`):
    not the queueing observed, since the deadline-aware batcher holds frames as long as their
    deadlines allow, so what frames waited tells how much slack there was, not what is
    needed."""
    batch = max(p.latency_s(COST_BATCH) for p in profiles)
    return OptionCost(
        name, size_px, accuracy, batch, batch / COST_BATCH, frame_bytes, batch, quality
    )


def engine_registry(engine: Engine) -> ClientRegistry:
    """A registry over what `engine` has loaded now."""

    def options(family: str) -> list[OptionCost]:
        fam = engine.repository.families.get(family)
        if fam is None:
            return []
        profiles: dict[str, list[LatencyProfile]] = {}
        for replica in engine.plan.of_family(family):
            points = engine.base_profiles.get(replica)
            if points:
                profiles.setdefault(replica.variant, []).append(LatencyProfile(points))
        accuracy = {
            v: engine.router.accuracy.get(f"{family}.{v}", 0.0) for v in fam.config.variants
        }
        return family_options(fam.config, accuracy, profiles)

    def capacity(family: str) -> float:
        hosts = {r.device for r in engine.plan.of_family(family)}
        return len(hosts - engine.lost_devices) * (1 - HEADROOM)

    return ClientRegistry(options, capacity)
