"""The settings of a training run, and the checks that refuse a run that cannot work before it starts."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from ..errors import CocktailError
from ..folder import checked_class_names
from ..networks import Discriminator


@dataclass
class TrainingConfig:
    """Hyper-parameters of one training run (defaults: the paper's StyleGAN2 recipe)."""

    kimg: float = 10.0
    batch_size: int = 32  # global batch across processes
    g_lr: float = 0.002
    d_lr: float = 0.002
    betas: tuple = (0.0, 0.99)
    eps: float = 1e-8
    r1_gamma: float = 10.0
    r1_interval: int = 16
    pl_weight: float = 2.0
    pl_interval: int = 4
    pl_decay: float = 0.01
    pl_batch_shrink: int = 2
    style_mixing_prob: float = 0.9
    ema_kimg: float = 10.0
    ema_rampup: float | str | None = None  # None, a fraction of images seen, or "auto" (see effective_ema_rampup)
    output_dir: str = "outputs/run"
    checkpointing_kimg: float | None = None
    checkpoints_total_limit: int | None = 2
    resume_from_checkpoint: str | None = None  # "latest" or a checkpoint path
    sample_every_kimg: float | None = None
    grid_seeds_per_class: int = 8
    report_to: str | None = None  # e.g. "tensorboard"
    seed: int = 0
    progress: bool = True

    def validate(self, world: int = 1) -> None:
        """Refuse, with one line naming the setting, any value training cannot use: a typo or a NaN in a
        recipe must stop a run before a model is loaded, not end it in a traceback (or finish it silently)."""
        apply_rules(self, _SETTING_RULES)
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


def apply_rules(settings, rules: dict) -> None:
    """Raise one line naming the first setting of ``settings`` (an object) that breaks its rule."""
    for name, rule in rules.items():
        problem = rule(getattr(settings, name))
        if problem:
            raise CocktailError(f"{name} {problem} (got {getattr(settings, name)!r})")


def number_rule(low=None, high=None, low_open=False, high_open=False, optional=False, integer=False):
    """A rule for one numeric setting: the right type, finite, within [low, high] (or open ends)."""
    def rule(value):
        if value is None and optional:
            return None
        kinds = (int,) if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds):
            return f"must be {'an integer' if integer else 'a number'}{' or null' if optional else ''}"
        if not math.isfinite(value):
            return "must be finite"
        if low == 0 and low_open and value <= 0:
            return "must be positive"
        if low is not None and (value < low or (low_open and value == low)):
            return f"must be {'>' if low_open else '>='} {low}"
        if high is not None and (value > high or (high_open and value == high)):
            return f"must be {'<' if high_open else '<='} {high}"
        return None
    return rule


def _betas(value):
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        return "must be two numbers (beta1, beta2)"
    return next(filter(None, map(number_rule(0, 1, high_open=True), value)), None)


def _ema_rampup(value):
    if value == "auto" or not number_rule(0, 1, low_open=True, optional=True)(value):
        return None
    return 'must be "auto", a number in (0, 1] or null'


def _text(optional=True):
    return lambda value: None if isinstance(value, str) or (optional and value is None) else "must be text"


_SETTING_RULES = {
    "kimg": number_rule(0),
    "batch_size": number_rule(1, integer=True),
    "g_lr": number_rule(0, low_open=True),
    "d_lr": number_rule(0, low_open=True),
    "betas": _betas,
    "eps": number_rule(0, low_open=True),
    "r1_gamma": number_rule(0),
    "r1_interval": number_rule(1, integer=True),
    "pl_weight": number_rule(0),
    "pl_interval": number_rule(1, integer=True),
    "pl_decay": number_rule(0, 1),
    "pl_batch_shrink": number_rule(1, integer=True),
    "style_mixing_prob": number_rule(0, 1),
    "ema_kimg": number_rule(0),
    "ema_rampup": _ema_rampup,
    "output_dir": _text(optional=False),
    "checkpointing_kimg": number_rule(0, low_open=True, optional=True),
    "checkpoints_total_limit": number_rule(1, integer=True, optional=True),
    "resume_from_checkpoint": _text(),
    "sample_every_kimg": number_rule(0, low_open=True, optional=True),
    "grid_seeds_per_class": number_rule(1, integer=True),
    "report_to": _text(),
    "seed": number_rule(0, integer=True),
    "progress": lambda value: None if isinstance(value, bool) else "must be true or false",
}


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
