"""The one exception tree of rheostat, and its mapping to HTTP status codes.

    RheostatError
    ├── ConfigError                 bad server/repository configuration (never reaches HTTP)
    │   └── RepositoryError         a model repository file is invalid (names file + field)
    └── RequestError                a request could not be served          -> http_status
        ├── InvalidRequestError     malformed JSON, bad tensor/shape/dtype -> 400
        ├── ModelNotFoundError      unknown model or version               -> 404
        ├── PayloadTooLargeError    body or tensor over the limit          -> 413
        ├── QueueFullError          admission refused, retry later         -> 429 (+ Retry-After)
        ├── NotReadyError           model/server not ready, worker lost    -> 503
        ├── DeadlineError           the deadline cannot be / was not met   -> 504
        └── BackendError            the model itself failed at run time    -> 500

Every message names the offending value and what was expected.
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "ConfigError",
    "DeadlineError",
    "InvalidRequestError",
    "ModelNotFoundError",
    "NotReadyError",
    "PayloadTooLargeError",
    "QueueFullError",
    "RepositoryError",
    "RequestError",
    "RheostatError",
]


class RheostatError(Exception):
    """Base of every error rheostat raises on purpose."""


class ConfigError(RheostatError, ValueError):
    """A configuration value is invalid."""


class RepositoryError(ConfigError):
    """A model repository file is invalid; the message names the file and the field."""

    def __init__(self, path: object, field: str, problem: str) -> None:
        self.path = str(path)
        self.field = field
        self.problem = problem
        where = f"{self.path}: {field}: " if field else f"{self.path}: "
        super().__init__(where + problem)


class RequestError(RheostatError):
    """A request failed; `http_status` says how the API reports it."""

    http_status = 500


class InvalidRequestError(RequestError):
    http_status = 400


class NotFoundError(RequestError):
    http_status = 404


class ModelNotFoundError(NotFoundError):
    pass


class PayloadTooLargeError(RequestError):
    http_status = 413


class QueueFullError(RequestError):
    http_status = 429

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class NotReadyError(RequestError):
    http_status = 503


class DeadlineError(RequestError):
    http_status = 504


class BackendError(RequestError):
    http_status = 500
