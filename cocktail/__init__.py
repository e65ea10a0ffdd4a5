"""GAN Cocktail: merge pretrained GANs into one class-conditional union GAN without their data."""

from .errors import CocktailError
from .merge.surgery import make_conditional
from .networks import Discriminator, Generator
from .union import UnionModel

__all__ = ["CocktailError", "Discriminator", "Generator", "UnionModel", "make_conditional"]
__version__ = "0.1.0"
