"""GAN Cocktail: merge pretrained GANs into one class-conditional union GAN without their data."""

from .errors import CocktailError
from .networks import Discriminator, Generator
from .union import UnionModel

__all__ = ["CocktailError", "Discriminator", "Generator", "UnionModel"]
__version__ = "0.1.0"
