"""rheostat: an inference server that scales accuracy, not hardware."""

__version__ = "0.1.0"

__all__ = ["__version__"]
