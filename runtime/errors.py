"""The project's exception types: one base class, one subclass per kind of failure."""


class PipelineError(Exception):
    """Base class of the errors this project raises on purpose."""


class ConfigError(PipelineError):
    """A flag, environment variable or properties-file entry is wrong."""


class FatalKafkaError(PipelineError):
    """A copy was not delivered, or the client hit an error no retry fixes: stop, and let the restart
    find which copies landed (resending could duplicate one that was stored after all)."""
