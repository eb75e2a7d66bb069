"""pyai: a fast, safe re-implementation of the Pacifica Archive Interface."""

__version__ = "0.1.0"
__all__ = ["__version__"]
