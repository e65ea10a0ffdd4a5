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
from pathlib import Path

from cocktail.cli import add_training_flags, training_settings, use_cpu_threads
from cocktail.errors import CocktailError, run_script
from cocktail.networks import PRESETS
from cocktail.settings import deciding_values, help_of
from cocktail.training import TrainingConfig

# Each flag overrides one entry of the preset architecture of a fresh model.
ARCHITECTURE_FLAGS = ("z_dim", "w_dim", "mapping_layers", "channel_base", "channel_max")
# What a source's training changes in TrainingConfig's defaults: the EMA ramp-up wherever it still matters.
SOURCE_TRAINING = {"ema_rampup": "auto"}


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
    p.add_argument("--kimg", type=float, default=100.0, help=help_of(TrainingConfig, "kimg"))
    add_training_flags(p, TrainingConfig(**SOURCE_TRAINING))
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


def fresh_networks(args, resolution: int, channels: int, seed: int):
    """A new (G, D) pair from the preset and the flags that override it."""
    import torch

    from cocktail.networks import Discriminator, Generator

    overrides = {flag: getattr(args, flag) for flag in ARCHITECTURE_FLAGS if getattr(args, flag) is not None}
    architecture = {**PRESETS[args.preset], **overrides}
    torch.manual_seed(seed)
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

    from cocktail.files import saving
    from cocktail.networks import network_kwargs
    from cocktail.provenance import Provenance
    from cocktail.sources import load_source
    from cocktail.specs import Origin, SourceRecord
    from cocktail.training import effective_ema_rampup, latest_checkpoint, train
    from cocktail.union import UnionModel

    output_dir = Path(args.output_dir)
    training_dir = Path(args.training_dir or f"{output_dir}-training")
    name = args.name or Path(args.data_dir.rstrip("/")).name or "source"
    config = TrainingConfig(**{**SOURCE_TRAINING, **training_settings(args)}, kimg=args.kimg,
                            output_dir=str(training_dir), report_to=args.report_to, progress=not args.no_progress)
    accelerator = Accelerator(mixed_precision=args.mixed_precision, log_with=args.report_to,
                              project_dir=str(training_dir))
    threads = use_cpu_threads(args.cpu_threads, accelerator.device, accelerator.num_processes)
    config.validate(accelerator.num_processes)  # every setting, before any model or image is loaded
    if args.init:
        G, D = load_init(args.init, args.resolution)
        start = {"init": args.init}
    source = load_source(args.data_dir, G.img_resolution if args.init else args.resolution or 64,
                         device=accelerator.device)
    if not args.init:
        G, D = fresh_networks(args, source.resolution, getattr(source, "channels", 3), config.seed)
        start = {"architecture": network_kwargs(G)}
    accelerator.print(f"training '{name}' ({G.img_resolution} px) on {args.data_dir} for {args.kimg:g} kimg "
                      f"on {accelerator.num_processes} process(es), {accelerator.device}"
                      + (f", {threads} CPU threads each" if threads else ""))
    result = train(G, D, source, config, accelerator=accelerator, class_names=[name], description=name)
    if accelerator.is_main_process:
        provenance = Provenance(sources=[SourceRecord(args.data_dir, name=name, origin=Origin())],
                                recipe={**deciding_values(config), **start,
                                        "ema_rampup_used": effective_ema_rampup(config)},
                                kimg={"train": result.kimg}, metrics={})
        last = latest_checkpoint(training_dir)
        then = (f"run it again with --resume_from_checkpoint latest to go on from {last.name}" if last is not None
                else "run it again (without --checkpointing_kimg there is no checkpoint to go on from)")
        with saving(f"the model folder {output_dir}", output_dir, then):
            UnionModel(generator=result.G_ema, discriminator=result.D, class_names=[name],
                       provenance=provenance.to_dict()).save_pretrained(output_dir)
        speed = result.stats["images_per_second"]
        accelerator.print(f"done: {result.kimg:g} kimg at {speed:.1f} img/s; model in {output_dir}, samples "
                          f"in {training_dir / 'samples'}")
    accelerator.end_training()
    return 0


if __name__ == "__main__":
    run_script(main)
