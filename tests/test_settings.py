"""A setting is one dataclass field: its check, flag, recipe key and record all follow from that declaration."""

import argparse
from dataclasses import dataclass

import pytest

from cocktail.errors import CocktailError
from cocktail.settings import (
    add_flags,
    check_rules,
    deciding_values,
    flag_values,
    number_rule,
    recipe_keys,
    setting,
)
from cocktail.training import TrainingConfig


@dataclass
class Options:
    size: int = setting(3, help="how big", rule=number_rule(1, integer=True), flag=True)
    verbose: bool = setting(False, help="say more", flag=True, deciding=False)
    newer: float = setting(0.5, rule=number_rule(0), record_default=False)
    rate_a: float = setting(0.1, help="both rates", flag="rate")
    rate_b: float = setting(0.1, flag="rate")
    where: str = setting("out", recipe=False, deciding=False)
    betas: tuple = setting((0.0, 0.99))


def test_flags_come_with_their_help_and_default_and_only_given_ones_are_read():
    parser = argparse.ArgumentParser()
    add_flags(parser, Options(size=4))
    text = " ".join(parser.format_help().split())
    assert "--size SIZE how big (default: 4)" in text and "--rate RATE both rates (default: 0.1)" in text
    assert "--verbose say more" in text and "--newer" not in text
    assert flag_values(parser.parse_args(["--size", "5", "--rate", "0.2"]), Options) == \
        {"size": 5, "rate_a": 0.2, "rate_b": 0.2}
    assert flag_values(parser.parse_args([]), Options) == {}


def test_rules_recipe_keys_and_what_decides_follow_the_declaration():
    with pytest.raises(CocktailError, match=r"^size must be >= 1 \(got 0\)$"):
        check_rules(Options(size=0))
    check_rules(Options())
    assert recipe_keys(Options) == ["size", "verbose", "newer", "rate_a", "rate_b", "betas"]
    assert deciding_values(Options()) == {"size": 3, "rate_a": 0.1, "rate_b": 0.1, "betas": [0.0, 0.99]}
    assert deciding_values(Options(newer=1.0))["newer"] == 1.0  # recorded once it is not the default


def test_what_decides_a_training_stage_is_unchanged():
    """Stage folders are named by a digest of these: another list would orphan every finished stage."""
    assert list(deciding_values(TrainingConfig())) == [
        "batch_size", "g_lr", "d_lr", "betas", "eps", "r1_gamma", "r1_interval", "pl_weight", "pl_interval",
        "pl_decay", "pl_batch_shrink", "style_mixing_prob", "ema_kimg", "ema_rampup", "seed"]
