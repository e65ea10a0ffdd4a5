"""The one exception type for expected user errors (bad file, unknown class, bad recipe…).

Scripts catch it at top level (``run_script``) and print ``error: <message>`` without a traceback.
"""

import sys
from collections.abc import Callable


class CocktailError(ValueError):
    """An expected, user-facing error with a one-line message."""


def first_line(err: BaseException, default: str | None = None) -> str:
    """An exception's first non-empty message line (``default`` or its type name when it has none):
    library errors quoted inside our one-line messages."""
    text = str(err).strip()
    return text.splitlines()[0].strip() if text else default or type(err).__name__


def run_script(main: Callable[[], int | None]) -> None:
    """Exit with ``main()``'s status; an expected error becomes one line on stderr and status 2."""
    try:
        sys.exit(main())
    except CocktailError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
