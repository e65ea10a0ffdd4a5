"""A few training iterations under ``accelerate launch`` (or plain ``python`` for one process).

Each rank writes its final G, G_ema and D to ``OUT/rank<r>.safetensors``. The setup removes the only
per-rank randomness (StyleGAN2's layer noise: strengths zero and frozen) and draws reals from a
``BankSource``, so 2 processes x B/2 must reproduce 1 process x B.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from accelerate import Accelerator  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from training_helpers import BankSource, freeze_noise_strengths, tiny_pair  # noqa: E402

from cocktail.training import TrainingConfig, train  # noqa: E402

BATCH = 8
STEPS = 4


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    args = p.parse_args()
    accelerator = Accelerator()
    rank, world = accelerator.process_index, accelerator.num_processes
    # Every rank starts from different weights: the loop must broadcast rank 0's.
    G, D = tiny_pair(seed=rank)
    freeze_noise_strengths(G)
    # eps=1 keeps Adam in its linear regime (update ~ lr * g): with the paper's eps its first step is
    # lr * sign(g), which turns float rounding in near-zero gradient entries into +-lr flips.
    config = TrainingConfig(kimg=STEPS * BATCH / 1000, batch_size=BATCH, g_lr=0.02, d_lr=0.02, eps=1.0,
                            r1_interval=2, pl_interval=2, ema_kimg=0.01, progress=False, seed=5,
                            output_dir=str(Path(args.out) / "run"))
    source = BankSource(BATCH, rank=rank, world=world)
    result = train(G, D, source, config, accelerator=accelerator)
    weights = {f"{name}.{k}": v.detach().cpu().contiguous()
               for name, net in (("G", result.G), ("G_ema", result.G_ema), ("D", result.D))
               for k, v in net.state_dict().items()}
    weights["pl_mean"] = torch.tensor([result.stats["pl_mean"]])
    weights["world"] = torch.tensor([world])
    Path(args.out).mkdir(parents=True, exist_ok=True)
    save_file(weights, str(Path(args.out) / f"rank{rank}.safetensors"))
    accelerator.wait_for_everyone()
    accelerator.end_training()


if __name__ == "__main__":
    main()
