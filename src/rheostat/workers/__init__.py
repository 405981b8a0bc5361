"""Device worker processes: one per device, running ONNX Runtime sessions."""

from rheostat.workers.handle import WorkerDiedError, WorkerHandle

__all__ = ["WorkerDiedError", "WorkerHandle"]
