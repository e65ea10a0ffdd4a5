"""CPU generation time of a StyleGAN2-ADA-configured model whose top blocks are marked float16.

Every official StyleGAN2-ADA checkpoint has ``num_fp16_res=4``; a converted one keeps it in its config.
This times ``G(z)`` for a batch of images on the CPU, and measures how far the output lies from the same
weights run entirely in float32 (``num_fp16_res=0``), the reference the original network gives in float32.

    OMP_NUM_THREADS=1 python benchmarks/generate_cpu.py                 # this checkout
    OMP_NUM_THREADS=1 PYTHONPATH=/path/to/old/checkout python benchmarks/generate_cpu.py   # another version

Run the versions alternately in one sitting (the machine is shared, so single runs move): the script
prints the median and every repeat.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import cocktail
from cocktail.networks import Generator

# A CPU-sized model at 64 px (this project's "tiny" preset), with StyleGAN2-ADA's conv_clamp and
# num_fp16_res=4 as in its official checkpoints. (With 512 channels, float16 on a CPU takes minutes.)
MODEL = dict(z_dim=32, w_dim=32, img_resolution=64, mapping_layers=2, channel_base=512, channel_max=64,
             conv_clamp=256)


def build(num_fp16_res: int, seed: int = 0) -> Generator:
    torch.manual_seed(seed)
    return Generator(**MODEL, num_fp16_res=num_fp16_res).eval().requires_grad_(False)


def seconds_per_batch(G: Generator, z: torch.Tensor, repeats: int) -> list[float]:
    G(z, noise_mode="const")  # warm-up: first-call allocations
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        G(z, noise_mode="const")
        times.append(time.perf_counter() - started)
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    G16, G32 = build(num_fp16_res=4), build(num_fp16_res=0)
    G16.load_state_dict(G32.state_dict())
    z = torch.randn([args.batch, G16.z_dim], generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        error = (G16(z, noise_mode="const") - G32(z, noise_mode="const")).abs().max().item()
        times = seconds_per_batch(G16, z, args.repeats)
    print(f"cocktail from {cocktail.__file__}; torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    print(f"64 px, num_fp16_res=4, batch {args.batch}: median {statistics.median(times):.4f} s "
          f"(runs: {', '.join(f'{t:.4f}' for t in times)}); max |G - G_float32| = {error:.2e}")


if __name__ == "__main__":
    main()
