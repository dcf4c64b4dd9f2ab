"""Errors a caller can show to a user as they are: each message is one line."""


class ServiceError(Exception):
    """Base class; ``code`` is a stable machine-readable name."""

    code = "error"


class NotFoundError(ServiceError):
    """A missing id, or one that belongs to another tenant: the two are indistinguishable."""

    code = "not_found"


class ConflictError(ServiceError):
    code = "conflict"


class InvalidInputError(ServiceError):
    code = "invalid_input"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
