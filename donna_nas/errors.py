"""User-facing errors.

A ``UserError`` is a mistake in what the user gave us (a file, a field, a flag). The CLI prints
its message on one line and exits with status 2 instead of showing a traceback, so every message
must name the file/field at fault and say what is allowed.
"""


class UserError(ValueError):
    """A problem with user input; its message is shown as-is, without a traceback."""
