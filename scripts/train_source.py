"""Train a source GAN on an image folder (or any source) and write it as a GAN Cocktail model folder.

    accelerate launch scripts/train_source.py --data_dir my-images/ --output_dir models/mine --kimg 500
    python scripts/train_source.py --data_dir my-images/ --output_dir models/tiny --preset tiny \\
        --resolution 32 --kimg 16 --batch_size 16 --sample_every_kimg 4          # ~2 min on 2 CPU cores
    accelerate launch scripts/train_source.py --data_dir more-cats/ --init org/cats@v1 \\
        --output_dir models/cats2                                              # go on from a model

The model folder (``--output_dir``) is what ``UnionModel.from_pretrained`` and ``scripts/merge.py`` take as
a source. Checkpoints, sample grids and TensorBoard logs go to ``--training_dir`` (default
``<output_dir>-training``) so they never end up in an upload of the model folder; interrupt with Ctrl-C
or SIGTERM and go on with ``--resume_from_checkpoint latest``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from cocktail.errors import CocktailError, run_script  # noqa: E402

# Architectures for a fresh model; each flag below overrides one entry.
PRESETS = {
    "paper": dict(z_dim=512, w_dim=512, mapping_layers=8, channel_base=32768, channel_max=512),
    "small": dict(z_dim=128, w_dim=128, mapping_layers=4, channel_base=4096, channel_max=128),
    "tiny": dict(z_dim=32, w_dim=32, mapping_layers=2, channel_base=512, channel_max=64),
}
ARCHITECTURE_FLAGS = ("z_dim", "w_dim", "mapping_layers", "channel_base", "channel_max")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data_dir", required=True,
                   help="image folder (PNG/JPEG/WebP), or any source spec: model folder, Hub id, TorchScript "
                        "file, module:function")
    p.add_argument("--output_dir", required=True, help="where the trained model folder is written")
    p.add_argument("--name", help="class name of the model (default: the data folder's name)")
    p.add_argument("--training_dir", help="checkpoints, samples and logs (default: <output_dir>-training)")
    p.add_argument("--init", help="start from this model (folder, example:<name>, org/name@rev) instead of "
                                  "fresh weights")
    p.add_argument("--resolution", type=int, help="image size of a fresh model (default 64; power of two)")
    p.add_argument("--preset", choices=sorted(PRESETS), default="paper", help="architecture of a fresh model")
    for flag in ARCHITECTURE_FLAGS:
        p.add_argument(f"--{flag}", type=int, help=f"override the preset's {flag}")
    p.add_argument("--kimg", type=float, default=100.0, help="training length, thousands of images")
    p.add_argument("--batch_size", type=int, default=32, help="global batch over all processes")
    p.add_argument("--learning_rate", type=float, default=0.002)
    p.add_argument("--r1_gamma", type=float, default=10.0)
    p.add_argument("--pl_weight", type=float, default=2.0)
    p.add_argument("--style_mixing_prob", type=float, default=0.9)
    p.add_argument("--ema_kimg", type=float, default=10.0)
    p.add_argument("--ema_rampup", type=float, help="e.g. 0.05: EMA half-life at most 5%% of images seen")
    p.add_argument("--mixed_precision", choices=["no", "fp16", "bf16"])
    p.add_argument("--checkpointing_kimg", type=float, help="save a checkpoint every N kimg")
    p.add_argument("--checkpoints_total_limit", type=int, default=2)
    p.add_argument("--resume_from_checkpoint", help="'latest' or a checkpoint folder")
    p.add_argument("--sample_every_kimg", type=float, help="write a sample grid every N kimg")
    p.add_argument("--report_to", help="e.g. tensorboard")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def load_init(spec: str, resolution: int | None):
    """``--init``: a one-class model's G_ema and D, to go on training from."""
    from cocktail.union import UnionModel

    model = UnionModel.from_pretrained(spec)
    if model.discriminator is None:
        raise CocktailError(f"{spec}: has no discriminator, so training cannot go on from it")
    if model.num_classes != 1:
        raise CocktailError(f"{spec}: has {model.num_classes} classes; a source model has one")
    if resolution and resolution != model.generator.img_resolution:
        raise CocktailError(f"--resolution {resolution} differs from {spec}'s "
                            f"{model.generator.img_resolution} px")
    return model.generator, model.discriminator


def fresh_networks(args, resolution: int, channels: int):
    """A new (G, D) pair from the preset and the flags that override it."""
    import torch

    from cocktail.networks import Discriminator, Generator

    overrides = {flag: getattr(args, flag) for flag in ARCHITECTURE_FLAGS if getattr(args, flag) is not None}
    architecture = {**PRESETS[args.preset], **overrides}
    torch.manual_seed(args.seed)
    try:
        G = Generator(img_resolution=resolution, img_channels=channels, **architecture)
        D = Discriminator(img_resolution=resolution, img_channels=channels,
                          channel_base=architecture["channel_base"], channel_max=architecture["channel_max"])
    except ValueError as err:
        raise CocktailError(f"--resolution / architecture: {err}") from None
    return G, D


def main(argv=None) -> int:
    args = parse_args(argv)
    from accelerate import Accelerator

    from cocktail.sources import load_source
    from cocktail.training import TrainingConfig, train
    from cocktail.union import UnionModel, network_kwargs

    output_dir = Path(args.output_dir)
    training_dir = Path(args.training_dir or f"{output_dir}-training")
    name = args.name or Path(args.data_dir.rstrip("/")).name or "source"
    accelerator = Accelerator(mixed_precision=args.mixed_precision, log_with=args.report_to,
                              project_dir=str(training_dir))
    if args.init:
        G, D = load_init(args.init, args.resolution)
        start = {"init": args.init}
    source = load_source(args.data_dir, G.img_resolution if args.init else args.resolution or 64,
                         device=accelerator.device)
    if not args.init:
        G, D = fresh_networks(args, source.resolution, getattr(source, "channels", 3))
        start = {"architecture": network_kwargs(G)}
    config = TrainingConfig(
        kimg=args.kimg, batch_size=args.batch_size, g_lr=args.learning_rate, d_lr=args.learning_rate,
        r1_gamma=args.r1_gamma, pl_weight=args.pl_weight, style_mixing_prob=args.style_mixing_prob,
        ema_kimg=args.ema_kimg, ema_rampup=args.ema_rampup, output_dir=str(training_dir),
        checkpointing_kimg=args.checkpointing_kimg, checkpoints_total_limit=args.checkpoints_total_limit,
        resume_from_checkpoint=args.resume_from_checkpoint, sample_every_kimg=args.sample_every_kimg,
        report_to=args.report_to, seed=args.seed, progress=not args.no_progress)
    accelerator.print(f"training '{name}' ({G.img_resolution} px) on {args.data_dir} for {args.kimg:g} kimg "
                      f"on {accelerator.num_processes} process(es), {accelerator.device}")
    result = train(G, D, source, config, accelerator=accelerator, class_names=[name], description=name)
    if accelerator.is_main_process:
        recipe = {k: v for k, v in dataclasses.asdict(config).items()
                  if k not in ("output_dir", "resume_from_checkpoint", "progress", "report_to")}
        provenance = {"method": None, "root": None,
                      "sources": [{"name": name, "spec": args.data_dir, "repo_id": None, "revision": None,
                                   "commit": None}],
                      "recipe": {**recipe, **start}, "kimg": {"train": result.kimg}, "metrics": {}}
        UnionModel(generator=result.G_ema, discriminator=result.D, class_names=[name],
                   provenance=provenance).save_pretrained(output_dir)
        speed = result.stats["images_per_second"]
        accelerator.print(f"done: {result.kimg:g} kimg at {speed:.1f} img/s; model in {output_dir}, samples "
                          f"in {training_dir / 'samples'}")
    accelerator.end_training()
    return 0


if __name__ == "__main__":
    run_script(main)
