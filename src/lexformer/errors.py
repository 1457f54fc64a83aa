"""User-facing errors.

Anything the user can cause (a bad path, an unknown scheme name, a corpus too short for the
requested length) raises :class:`LexformerError`. The CLI prints its message on one line and
exits with code 2; library users catch it like any ``ValueError``.
"""


class LexformerError(ValueError):
    """An error caused by the user's input, with a message that says how to fix it."""
