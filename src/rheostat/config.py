"""Server configuration: frozen, typed, validated at construction.

Environment variables are read only by the CLI; everything below is plain data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from rheostat.apps import AppPolicy
from rheostat.devices.device import Device, default_devices
from rheostat.devices.power import PowerModel

__all__ = ["ServerConfig"]


@dataclass(frozen=True)
class ServerConfig:
    model_repository: Path
    """Folder of model families (see rheostat.repository)."""
    host: str = "127.0.0.1"
    """Address the HTTP server binds."""
    http_port: int = 8000
    """HTTP port of the Open Inference Protocol API (0: pick a free one)."""
    devices: tuple[Device, ...] = field(default_factory=default_devices)
    """Devices to run workers on; default one CPU device with every core."""
    max_request_bytes: int = 64 * 2**20
    """Largest accepted request body (413 above it)."""
    max_tensor_elements: int = 2**24
    """Largest accepted tensor, in elements (413 above it)."""
    max_image_pixels: int = 40_000_000
    """Largest accepted image, in pixels (413 above it)."""
    profile_repeats: int = 3
    """Timed runs per batch size when profiling a variant at load time."""
    apps: Mapping[str, AppPolicy] = field(default_factory=dict)
    """Per-application policies, by the name requests give in their `app` parameter."""
    power: Mapping[str, PowerModel] = field(default_factory=dict)
    """Power models by device type (`--power`); others are measured (RAPL) or estimated."""

    def __post_init__(self) -> None:
        if not 0 <= self.http_port <= 65535:
            raise ValueError(f"http_port {self.http_port} must be in 0..65535")
        if not self.devices:
            raise ValueError("devices: need at least one device, e.g. cpu:0-1")
        names = [d.name for d in self.devices]
        if len(set(names)) != len(names):
            raise ValueError(f"devices: names {names} must be unique")
        for name in ("max_request_bytes", "max_tensor_elements", "max_image_pixels"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} {getattr(self, name)} must be > 0")
        if self.profile_repeats < 1:
            raise ValueError(f"profile_repeats {self.profile_repeats} must be >= 1")
