"""The one exception type for expected user errors (bad file, unknown class, bad recipe…).

Scripts catch it at top level and print ``error: <message>`` without a traceback.
"""


class CocktailError(ValueError):
    """An expected, user-facing error with a one-line message."""
