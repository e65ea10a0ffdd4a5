"""The settings of a training run, and the checks that refuse a run that cannot work before it starts."""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass

from ..errors import CocktailError
from ..folder import checked_class_names
from ..networks import Discriminator
from ..settings import boolean_rule, check_rules, number_rule, setting, text_rule


def _betas(value):
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        return "must be two numbers (beta1, beta2)"
    return next(filter(None, map(number_rule(0, 1, high_open=True), value)), None)


def _ema_rampup(value):
    if value == "auto" or not number_rule(0, 1, low_open=True, optional=True)(value):
        return None
    return 'must be "auto", a number in (0, 1] or null'


def _ema_rampup_flag(text: str) -> float | str | None:
    """``--ema_rampup``: "auto", "none" or a fraction of the images seen."""
    if text in ("auto", "none"):
        return None if text == "none" else text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not auto, none or a number") from None


@dataclass
class TrainingConfig:
    """Hyper-parameters of one training run (defaults: the paper's StyleGAN2 recipe). Each field declares its
    flag, recipe key, check and whether it decides a result (``cocktail.settings``)."""

    kimg: float = setting(10.0, help="training length, thousands of images", rule=number_rule(0), recipe=False,
                          deciding=False)
    batch_size: int = setting(32, help="global batch over all processes", rule=number_rule(1, integer=True),
                              flag=True)
    g_lr: float = setting(0.002, help="Adam learning rate of G and D", rule=number_rule(0, low_open=True),
                          flag="learning_rate")
    d_lr: float = setting(0.002, rule=number_rule(0, low_open=True), flag="learning_rate")
    betas: tuple = setting((0.0, 0.99), help="Adam's betas", rule=_betas)
    eps: float = setting(1e-8, help="Adam's epsilon", rule=number_rule(0, low_open=True))
    r1_gamma: float = setting(10.0, help="weight of the R1 penalty on D's gradient at real images",
                              rule=number_rule(0), flag=True)
    r1_interval: int = setting(16, help="D steps per R1 penalty (lazy regularisation)",
                               rule=number_rule(1, integer=True))
    pl_weight: float = setting(2.0, help="weight of G's path length penalty", rule=number_rule(0), flag=True)
    pl_interval: int = setting(4, help="G steps per path length penalty", rule=number_rule(1, integer=True))
    pl_decay: float = setting(0.01, help="decay of the path length's running mean", rule=number_rule(0, 1))
    pl_batch_shrink: int = setting(2, help="the path length penalty's batch is the batch divided by this",
                                   rule=number_rule(1, integer=True))
    style_mixing_prob: float = setting(0.9, help="share of generated images that mix the styles of two latents",
                                       rule=number_rule(0, 1), flag=True)
    ema_kimg: float = setting(10.0, help="G EMA half-life in kimg", rule=number_rule(0), flag=True)
    ema_rampup: float | str | None = setting(
        None, help="cap the EMA half-life at this fraction of the images seen so far; 'auto': 0.05 for runs "
                   "shorter than ema_kimg / 0.05 (where it still matters), else none",
        rule=_ema_rampup, flag=True, parse=_ema_rampup_flag)
    output_dir: str = setting("outputs/run", help="checkpoints, sample grids and logs", rule=text_rule(optional=False),
                              recipe=False, deciding=False)
    checkpointing_kimg: float | None = setting(
        None, help="save a checkpoint every N kimg", rule=number_rule(0, low_open=True, optional=True), flag=True,
        parse=float, deciding=False)
    checkpoints_total_limit: int | None = setting(
        2, help="checkpoints kept, the oldest removed first (in a recipe, null: all)",
        rule=number_rule(1, integer=True, optional=True), flag=True, deciding=False)
    resume_from_checkpoint: str | None = setting(None, help="'latest' or a checkpoint folder", rule=text_rule(),
                                                 flag=True, deciding=False)
    sample_every_kimg: float | None = setting(
        None, help="write a sample grid every N kimg", rule=number_rule(0, low_open=True, optional=True),
        flag=True, parse=float, deciding=False)
    grid_seeds_per_class: int = setting(8, help="seeds per class in a sample grid", rule=number_rule(1, integer=True),
                                        deciding=False)
    report_to: str | None = setting(None, help="e.g. tensorboard", rule=text_rule(), recipe=False, deciding=False)
    seed: int = setting(0, help="seed of the run's randomness", rule=number_rule(0, integer=True), flag=True)
    progress: bool = setting(True, help="show a progress bar", rule=boolean_rule, deciding=False)

    def validate(self, world: int = 1) -> None:
        """Refuse, with one line naming the setting, any value training cannot use: a typo or a NaN in a
        recipe must stop a run before a model is loaded, not end it in a traceback (or finish it silently)."""
        check_rules(self)
        if self.batch_size % world:
            raise CocktailError(f"batch_size must be a multiple of the number of processes ({world}) "
                                f"(got {self.batch_size})")

    def to_json(self) -> dict:
        """The settings as JSON values (a checkpoint records them)."""
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}

    def to_hparams(self) -> dict:
        """The settings as TensorBoard hparams, which take no None and no tuples."""
        return {key: str(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()
                if value is not None}


AUTO_EMA_RAMPUP = 0.05  # StyleGAN2-ADA's ramp-up: the EMA half-life is at most 5 % of the images seen so far


def effective_ema_rampup(config: TrainingConfig) -> float | None:
    """``ema_rampup="auto"``: the ramp-up wherever it still shapes the final G_ema, i.e. for runs shorter than
    ``ema_kimg / AUTO_EMA_RAMPUP`` (200 kimg at the paper's 10-kimg half-life); none for longer ones.

    Without it a short run hands on a G_ema that is mostly its starting weights: after 8 kimg at a 10-kimg
    half-life, 0.5^0.8 = 57 % of them. Rooting an emoji "food" source from an emoji "smileys" root for 8
    kimg (benchmarks/ema_rooting.py, on this project's earlier example models) left G_ema nearer the root
    than the source (pixel Fréchet distance 5.5 to the root, 8.9 to the source); with the ramp-up it sat
    by the source (20.6 and 6.3), like the raw G.
    """
    if config.ema_rampup != "auto":
        return config.ema_rampup
    return AUTO_EMA_RAMPUP if config.kimg * AUTO_EMA_RAMPUP < config.ema_kimg else None


def check_setup(G, D, source, config: TrainingConfig, world: int, class_names) -> None:
    """Fail before any training on what can be checked up front, with messages naming the thing."""
    config.validate(world)
    if G.img_resolution != D.img_resolution or G.c_dim != D.c_dim or G.img_channels != D.img_channels:
        raise CocktailError(f"generator ({G.img_resolution} px, {G.img_channels} ch, c_dim={G.c_dim}) and "
                            f"discriminator ({D.img_resolution} px, {D.img_channels} ch, c_dim={D.c_dim}) "
                            "do not match")
    channels = getattr(source, "channels", 3)
    if source.resolution != G.img_resolution or channels != G.img_channels:
        raise CocktailError(f"source gives {source.resolution} px x {channels} channels but the generator "
                            f"makes {G.img_resolution} px x {G.img_channels}")
    num_classes = max(G.c_dim, 1)
    if source.num_classes > num_classes:
        raise CocktailError(f"source has {source.num_classes} classes but the generator has {num_classes}")
    if class_names is not None:
        checked_class_names(G, D, class_names)
    check_minibatch_groups(D, config.batch_size, world)


def check_minibatch_groups(D: Discriminator, batch_size: int, world: int) -> None:
    """Each process's batch must split into D's minibatch-std groups (merges check it before loading more)."""
    group = D.b4.mbstd.group_size if D.b4.mbstd is not None else None
    per_process = batch_size // world
    if group is not None and per_process % min(group, per_process):
        raise CocktailError(f"batch per process ({per_process}) must be a multiple of the discriminator's "
                            f"minibatch-std group size ({group})")
