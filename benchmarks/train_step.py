"""Training throughput (images per second) of ``cocktail.training.train`` for named configurations.

    python benchmarks/train_step.py                          # every config, on CUDA if present else CPU
    python benchmarks/train_step.py 32px-plain 32px-full --device cpu --threads 2 --repeats 3

A measurement is a real ``train()`` call (sampling reals, G and D steps, lazy R1 / path length when the
config has them, EMA, gradient checks) after a warm-up call, timed over whole lazy-regularisation cycles
(multiples of 16 iterations: one R1 step and four path-length steps per 16), so the regularisers are
amortised as in training (except 256 px on CPU, see CONFIGS). Reals come from a source of random images
so that the figure is the loop's, not a dataset's.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time

import torch

from cocktail.networks import PRESETS, Discriminator, Generator
from cocktail.training import TrainingConfig, train

TINY, PAPER = PRESETS["tiny"], PRESETS["paper"]
WIDE = {**PAPER, "channel_max": 64}
PLAIN = dict(r1_gamma=0.0, pl_weight=0.0, style_mixing_prob=0.0)
FULL = {}  # the paper's recipe: TrainingConfig's defaults

# name: (resolution, architecture, recipe, batch on GPU, batch on CPU, timed iterations on GPU, on CPU)
CONFIGS = {
    # Our tiny preset (the shipped example models): channel_max 64 but channel_base 512, so 64 channels
    # at 4-8 px, 32 at 16 px, 16 at 32 px; 32-d z and w, 2 mapping layers. Plain: no R1, no path length.
    "32px-plain": (32, TINY, PLAIN, 32, 32, 16, 16),
    "32px-full": (32, TINY, FULL, 32, 32, 16, 16),
    # StyleGAN2-ADA's defaults with channel_max 64 (64 channels at every resolution, 512-d z and w,
    # 8 mapping layers): the likeliest reading of "32 px, channel_max 64" for a reference implementation.
    "32px-wide-plain": (32, WIDE, PLAIN, 32, 32, 16, 8),
    # The paper's networks and recipe. On CPU (about a minute per iteration) only 2 iterations of batch 4,
    # which include one R1 and one path-length step instead of 1/8 and 1/2 of one: a lower bound.
    "256px-paper": (256, PAPER, FULL, 32, 4, 32, 2),
}


class RandomImages:
    """Uniform noise images: costs next to nothing, so the loop is what gets measured."""

    num_classes = 1
    channels = 3

    def __init__(self, resolution):
        self.resolution = resolution

    def to(self, device):
        return self

    def sample(self, batch_size, device, generator=None):
        images = torch.rand([batch_size, 3, self.resolution, self.resolution], generator=generator) * 2 - 1
        return images.to(device), torch.zeros(batch_size, dtype=torch.int64, device=device)


def measure(name, device, accelerator, repeats=1) -> dict:
    resolution, architecture, recipe, gpu_batch, cpu_batch, gpu_iterations, cpu_iterations = CONFIGS[name]
    on_gpu = device.type == "cuda"
    batch, iterations = (gpu_batch, gpu_iterations) if on_gpu else (cpu_batch, cpu_iterations)
    torch.manual_seed(0)
    G = Generator(img_resolution=resolution, **architecture)
    D = Discriminator(img_resolution=resolution, channel_base=architecture["channel_base"],
                      channel_max=architecture["channel_max"])
    source = RandomImages(resolution)
    with tempfile.TemporaryDirectory() as scratch:
        config = TrainingConfig(batch_size=batch, output_dir=scratch, progress=False, **recipe)

        def run(steps):
            started = time.perf_counter()
            result = train(G, D, source, TrainingConfig(**{**vars(config), "kimg": steps * batch / 1000}),
                           accelerator=accelerator)
            if on_gpu:
                torch.cuda.synchronize()
            return result, time.perf_counter() - started

        run(2 if on_gpu or resolution <= 64 else 1)  # warm-up: allocator, kernels (and cuDNN autotuning)
        speeds = []
        for _ in range(repeats):
            result, seconds = run(iterations)
            speeds.append(result.images_seen / seconds)
    return {"config": name, "batch": batch, "iterations": iterations, "img_per_s": statistics.median(speeds),
            "all": speeds}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("configs", nargs="*", default=list(CONFIGS), help=f"any of {', '.join(CONFIGS)}")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--repeats", type=int, default=1, help="timed runs per config; the median is reported")
    p.add_argument("--mixed_precision", choices=["no", "bf16", "fp16"], default="no")
    args = p.parse_args(argv)
    unknown = [c for c in args.configs if c not in CONFIGS]
    if unknown:
        p.error(f"unknown config(s) {unknown}; choose from {', '.join(CONFIGS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    from accelerate import Accelerator

    use_cpu = args.device == "cpu" or (args.device == "auto" and not torch.cuda.is_available())
    accelerator = Accelerator(cpu=use_cpu, mixed_precision=args.mixed_precision)
    device = accelerator.device
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        hardware = torch.cuda.get_device_name(device)
    else:
        hardware = f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs"
    print(f"# torch {torch.__version__} on {device} ({hardware}), {torch.get_num_threads()} CPU threads, "
          f"mixed precision {args.mixed_precision}")
    print(f"{'config':<18} {'batch':>5} {'iters':>5} {'img/s':>9}   runs")
    for name in args.configs:
        row = measure(name, device, accelerator, repeats=args.repeats)
        runs = " ".join(f"{s:.2f}" for s in row["all"])
        speed = row["img_per_s"]
        print(f"{name:<18} {row['batch']:>5} {row['iterations']:>5} {speed:>9.2f}   {runs}", flush=True)


if __name__ == "__main__":
    main()
