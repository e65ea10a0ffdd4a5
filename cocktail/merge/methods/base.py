"""What a merge method is, and the registry that makes one a choice of MergePlan, recipes and ``--method``."""

from __future__ import annotations

from ...networks import Discriminator, Generator
from ..surgery import add_classes, make_conditional


class MergeMethod:
    """One way to set up the training loop for a merge: subclass it, override what differs, register it.

    Every method ends in one stage that fine-tunes conditional networks on the labelled mixture of all
    sources. ``parents`` says what that stage starts from: the average of the root and every other source
    rooted first, in a stage of its own ("rooted"), or of the raw sources ("sources"), made conditional
    (the stage is then named "merge"); or, when None, ``start`` applied to the root (the stage is named
    after the method).
    """

    name: str  # --method, the recipe's method and the folder stages/<name>/
    title: str  # its name in the paper's tables
    parents: str | None = None
    can_extend: bool = True  # whether it can grow an existing union (--extend): it must start from the union

    def check(self, plan) -> None:
        """Refuse a plan this method cannot run, after MergePlan's own checks and before any training."""

    def start(self, G: Generator, D: Discriminator, num_classes: int, seed: int) -> tuple[Generator, Discriminator]:
        """The final stage's networks, from the root's (when there are no parents); a union being extended
        keeps its classes and gains the new ones."""
        return add_classes(G, D, num_classes) if G.c_dim else make_conditional(G, D, num_classes, seed=seed)

    def settings(self, plan) -> dict:
        """This method's own settings that decide its result: recorded in the recipe and in its stage's inputs."""
        return {}

    def training(self, plan, G: Generator, D: Discriminator, accelerator, log,
                 parents: list[tuple[Generator, Discriminator]] | None) -> dict:
        """Extra arguments of ``train`` for the final stage, given its start networks and the parents they
        were averaged from (penalties, frozen weights)."""
        return {}

    def roots(self, plan, i: int) -> bool:
        """Whether source ``i`` is rooted, in a stage of its own, before the merge."""
        return self.parents == "rooted" and i != plan.root and i >= plan.base_classes and plan.root_kimg > 0


MERGE_METHODS: dict[str, MergeMethod] = {}  # name → method, registered in the order of the paper's tables


def register_method(cls: type[MergeMethod]) -> type[MergeMethod]:
    """Make a method a choice of MergePlan, recipes and ``--method``."""
    if cls.name in MERGE_METHODS:
        raise ValueError(f"a merge method named {cls.name!r} is already registered")
    MERGE_METHODS[cls.name] = cls()
    return cls
