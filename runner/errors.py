"""Errors the user can act on: printed as one line, never as a traceback."""


class UserError(Exception):
    """Something the user can fix; str() is the whole message."""


class InfraError(UserError):
    """The host could not build or boot a kernel (not a test verdict)."""


# Exit codes of `runner`, one meaning each (README, "Exit codes").
EXIT_PASSED = 0  # every test passed or was skipped
EXIT_FAILED = 1  # a test failed or crashed: a verdict on the kernel
EXIT_ERROR = 2  # usage or environment error, printed as one line
EXIT_INTERNAL = 3  # a bug in the runner: one line, the traceback saved to a file
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)
EXIT_TERMINATED = 143  # SIGTERM, e.g. a CI timeout (128 + SIGTERM)
EXIT_BROKEN_PIPE = 141  # standard output closed early, e.g. by `| head` (128 + SIGPIPE)
