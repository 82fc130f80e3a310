"""Errors the user can act on: printed as one line, never as a traceback."""


class UserError(Exception):
    """Something the user can fix; str() is the whole message."""


class InfraError(UserError):
    """The host could not build or boot a kernel (not a test verdict)."""
