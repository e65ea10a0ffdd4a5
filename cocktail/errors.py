"""The one exception type for expected user errors (bad file, unknown class, bad recipe…).

Scripts catch it at top level (``run_script``) and print ``error: <message>`` without a traceback.
"""

import sys
from collections.abc import Callable


class CocktailError(ValueError):
    """An expected, user-facing error with a one-line message."""


def run_script(main: Callable[[], int | None]) -> None:
    """Exit with ``main()``'s status; an expected error becomes one line on stderr and status 2."""
    try:
        sys.exit(main())
    except CocktailError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
