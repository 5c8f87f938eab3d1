"""The project's exception types: one base class, one subclass per kind of failure."""


class PipelineError(Exception):
    """Base class of the errors this project raises on purpose."""


class ConfigError(PipelineError):
    """A flag, environment variable or properties-file entry is wrong."""


class ValidationError(PipelineError):
    """A decoded order breaks a business rule; permanent, so it goes to the DLQ."""


class TransientProcessingError(PipelineError):
    """Processing failed in a way that may succeed on a later attempt."""
