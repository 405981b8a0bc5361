"""Devices and the per-device mechanism that queues, batches and dispatches work."""

from rheostat.devices.device import Device, DeviceKind, default_devices, parse_device

__all__ = ["Device", "DeviceKind", "default_devices", "parse_device"]
