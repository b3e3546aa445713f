"""Exceptions raised at the library's boundaries; each message names what was wrong and where."""


class FlowforgeError(Exception):
    """Base class of every error flowforge raises on purpose."""


class ConfigError(FlowforgeError):
    """A configuration file or override is invalid (names the file, the field and what was expected)."""


class DataError(FlowforgeError):
    """A data file is missing, truncated or of the wrong format (names the file)."""


class CheckpointError(FlowforgeError):
    """A checkpoint is missing, incomplete or inconsistent with the model."""


class ShapeError(FlowforgeError, ValueError):
    """An input tensor has the wrong shape (names the expected and the actual shape)."""


class NonFiniteError(FlowforgeError):
    """A metric or weight came out NaN or infinite where that must never be ignored."""


class MissingDependencyError(FlowforgeError, ImportError):
    """An optional package that a feature needs is not installed (names the extra to install)."""
