"""The merge methods: a base class, a registry, and one module per family of methods.

Adding a method is one new module holding a ``@register_method`` subclass of ``MergeMethod``, and its name in
the import below: the registry's order (``--method``'s choices, ``scripts/reproduce.py``'s columns) is the
order of that import, which is the order of the paper's tables.
"""

from . import baselines, cocktail, distilled  # noqa: F401  (registers their methods)
from .base import MERGE_METHODS, MergeMethod, register_method

__all__ = ["MERGE_METHODS", "MergeMethod", "register_method"]
