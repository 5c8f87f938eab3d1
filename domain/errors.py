"""The order domain's failures: permanent (never retried) or transient (worth another attempt)."""


class OrderError(Exception):
    """Base class of the errors the order rules raise on purpose."""


class ValidationError(OrderError):
    """A decoded order breaks a business rule; permanent, so it goes to the DLQ."""


class TransientProcessingError(OrderError):
    """Processing failed in a way that may succeed on a later attempt."""
