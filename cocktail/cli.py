"""The training flags that scripts/merge.py and scripts/train_source.py share, and how they map to TrainingConfig."""

from __future__ import annotations

import argparse


def ema_rampup(text: str) -> float | str:
    """``--ema_rampup``: "auto", "none" (kept as text until training_settings, since None means "not given")
    or a fraction of the images seen."""
    if text in ("auto", "none"):
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not auto, none or a number") from None


# flag: (type, help); each is a TrainingConfig field, except learning_rate (g_lr and d_lr).
TRAINING_FLAGS = {
    "batch_size": (int, "global batch over all processes"),
    "learning_rate": (float, "Adam learning rate of G and D"),
    "r1_gamma": (float, None),
    "pl_weight": (float, None),
    "style_mixing_prob": (float, None),
    "ema_kimg": (float, "G EMA half-life in kimg"),
    "ema_rampup": (ema_rampup, "cap the EMA half-life at this fraction of the images seen so far; 'auto': 0.05 "
                               "for runs shorter than ema_kimg / 0.05 (where it still matters), else none"),
    "seed": (int, None),
    "checkpointing_kimg": (float, "save a checkpoint every N kimg"),
    "checkpoints_total_limit": (int, None),
    "sample_every_kimg": (float, "write a sample grid every N kimg"),
    "resume_from_checkpoint": (str, "'latest' or a checkpoint folder"),
}


def add_training_flags(parser: argparse.ArgumentParser, help_overrides: dict | None = None,
                       shown_defaults: dict | None = None, **defaults) -> None:
    """``--batch_size`` … ``--resume_from_checkpoint``, plus ``--mixed_precision`` and ``--report_to``.

    ``defaults`` become argparse defaults; ``shown_defaults`` are only named in the help (where a recipe
    layer below the flags supplies the value).
    """
    shown = {**(shown_defaults or {}), **defaults}
    for flag, (kind, text) in TRAINING_FLAGS.items():
        text = (help_overrides or {}).get(flag, text)
        if shown.get(flag) is not None:
            text = f"{text + ' ' if text else ''}(default: {shown[flag]})"
        parser.add_argument(f"--{flag}", type=kind, default=defaults.get(flag), help=text)
    parser.add_argument("--mixed_precision", choices=["no", "fp16", "bf16"])
    parser.add_argument("--report_to", help="e.g. tensorboard")


def training_settings(args: argparse.Namespace) -> dict:
    """The TrainingConfig fields the training flags set (those left unset are left out)."""
    settings = {flag: getattr(args, flag) for flag in TRAINING_FLAGS if flag != "learning_rate"}
    settings.update(g_lr=args.learning_rate, d_lr=args.learning_rate)
    settings = {key: value for key, value in settings.items() if value is not None}
    if settings.get("ema_rampup") == "none":
        settings["ema_rampup"] = None
    return settings
