"""Per-application policies: latency SLO, minimum accuracy, energy budget, priority and a
share cap.

An application names its policy with the request parameter `app`; the request's own
`slo_ms`, `min_accuracy`, `max_energy_j` and `priority` override the policy's. Policies
come from a YAML file (`rheostat serve --apps apps.yaml`, or `apps.yaml` at the
repository's root)::

    apps:
      checkout-camera: {slo_ms: 200, min_accuracy: 0.75, priority: 1}
      batch-archive: {family: efficientnet_lite, priority: 200, max_share: 0.3}
      solar-sensor: {family: digits, max_energy_j: 0.002}

and change while serving (`PUT /rheostat/apps/NAME`, `rheostat apps set`).

Priority follows Triton: 1 is the highest level, larger numbers are lower, 0 means the
default level (100). Lower-priority requests degrade first: they leave a replica's queue to
the higher levels earlier (`queue_fill_limit`) and take the next rung of the degrade ladder.
`max_share` caps the share of a family's admitted load one application may take while that
family is under pressure.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rheostat.errors import ConfigError

__all__ = ["APP_FIELDS", "AppPolicy", "app_policy", "load_apps", "queue_fill_limit"]

APP_FIELDS = {"family", "slo_ms", "min_accuracy", "priority", "max_share", "max_energy_j"}


@dataclass(frozen=True)
class AppPolicy:
    name: str
    family: str | None = None
    """Only this family may be requested by the app (None: any)."""
    slo_ms: float | None = None
    """Latency SLO of the app's requests (None: the family's)."""
    min_accuracy: float = 0.0
    """Never serve the app from a variant less accurate than this."""
    priority: int = 0
    """Triton priority level: 1 highest; 0 the default level."""
    max_share: float = 1.0
    """Largest share of its family's admitted load under pressure."""
    max_energy_j: float | None = None
    """Joules one inference (one input row) may cost at most, alone on its device (None: no
    budget); a request of n rows may cost n times it."""

    def __post_init__(self) -> None:
        if self.family is not None and not isinstance(self.family, str):
            raise ValueError(f"app {self.name!r}: family {self.family!r} must be a string")
        for key in ("slo_ms", "min_accuracy", "priority", "max_share", "max_energy_j"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int | float | None):
                raise ValueError(f"app {self.name!r}: {key} {value!r} must be a number")
        if self.priority != int(self.priority):
            raise ValueError(f"app {self.name!r}: priority {self.priority} must be an integer")
        if self.slo_ms is not None and self.slo_ms <= 0:
            raise ValueError(f"app {self.name!r}: slo_ms {self.slo_ms} must be > 0")
        if not 0 <= self.min_accuracy <= 1:
            raise ValueError(f"app {self.name!r}: min_accuracy {self.min_accuracy} not in [0, 1]")
        if self.priority < 0:
            raise ValueError(f"app {self.name!r}: priority {self.priority} must be >= 0")
        if not 0 < self.max_share <= 1:
            raise ValueError(f"app {self.name!r}: max_share {self.max_share} not in (0, 1]")
        if self.max_energy_j is not None and not self.max_energy_j > 0:
            raise ValueError(f"app {self.name!r}: max_energy_j {self.max_energy_j} must be > 0")


def app_policy(name: str, data: Any, where: str = "") -> AppPolicy:
    """An AppPolicy from a mapping of its fields; a ConfigError names `where` and the field."""
    where = where or f"app {name!r}"
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {data!r}")
    unknown = sorted(set(data) - APP_FIELDS)
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown field; expected {sorted(APP_FIELDS)}")
    try:
        return AppPolicy(name=name, **data)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _policy(path: Path, name: str, data: Any) -> AppPolicy:
    return app_policy(name, data, f"{path}: apps.{name}")


def load_apps(path: Path) -> dict[str, AppPolicy]:
    """Read an apps file; a ConfigError names the file, the app and the field at fault."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read apps file: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("apps"), dict):
        raise ConfigError(f"{path}: expected a mapping with an 'apps' mapping at the top")
    return {name: _policy(path, name, body) for name, body in data["apps"].items()}


def queue_fill_limit(priority: int) -> float:
    """Share of a replica's queue a request of this priority level may fill.

    The highest levels may fill it all; the default level leaves a quarter to higher ones;
    lower levels leave half, so they are the first to degrade to cheaper variants.
    """
    level = priority or 100
    if level < 100:
        return 1.0
    return 0.75 if level == 100 else 0.5
