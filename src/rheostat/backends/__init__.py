"""Backends: ONNX Runtime (inside worker processes) and the profiled-latency fake."""

from rheostat.backends.profiled import ProfiledExecutor

__all__ = ["ProfiledExecutor"]
