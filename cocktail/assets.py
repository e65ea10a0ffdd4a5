"""The example models shipped inside the package, named ``example:<name>``.

``example:union`` is the default union model (demo, README); ``example:<source>`` are the
single-domain sources it was merged from. They live in ``cocktail/assets/`` in the same
folder layout as on the Hub, so provenance can name them without machine-specific paths.
"""

from __future__ import annotations

from pathlib import Path

from .errors import CocktailError

ASSETS_DIR = Path(__file__).parent / "assets"
PREFIX = "example:"
DEFAULT_UNION = f"{PREFIX}union"
REAL_EXAMPLES_DIR = ASSETS_DIR / "examples_real"  # one small real image per class of the default union


def is_example(spec) -> bool:
    return isinstance(spec, str) and spec.startswith(PREFIX)


def example_path(spec: str) -> Path:
    """``example:<name>`` → its folder, with the available names in the error."""
    name = spec[len(PREFIX):]
    folder = ASSETS_DIR / name
    if not name or "/" in name or not (folder / "generator").is_dir():
        raise CocktailError(f"unknown example model {spec!r}; available: {', '.join(example_names())}")
    return folder


def example_names() -> list[str]:
    return sorted(f"{PREFIX}{p.name}" for p in ASSETS_DIR.iterdir() if (p / "generator").is_dir())


def real_examples() -> dict[str, Path]:
    """Class name → the shipped real image of that class (to try projection without an image of one's own)."""
    return {path.stem: path for path in sorted(REAL_EXAMPLES_DIR.glob("*.png"))}
