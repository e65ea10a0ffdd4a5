"""GAN Cocktail itself (Avrahami et al. 2022): rooting, then merging."""

from __future__ import annotations

from .base import MergeMethod, register_method


@register_method
class Cocktail(MergeMethod):
    """GAN Cocktail: root every other source, average them with the root, make that conditional, fine-tune it
    on the mixture."""

    name, title, parents = "cocktail", "GAN Cocktail", "rooted"
