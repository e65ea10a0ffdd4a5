"""A tiny training run in its own process, for the kill / SIGTERM / resume tests.

    python tests/train_worker.py OUTPUT_DIR [--resume] [--signal_at ITERATION SIGNAL]
        # e.g. --signal_at 3 KILL: SIGKILL itself during this run's 3rd G step
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training_helpers import SIGNALS, SignalOnIteration, SolidSource, resumable_config, tiny_pair  # noqa: E402

from cocktail.training import train  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("output_dir")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--signal_at", nargs=2)
    args = p.parse_args()
    g_penalty = SignalOnIteration(int(args.signal_at[0]), SIGNALS[args.signal_at[1]]) if args.signal_at else None
    G, D = tiny_pair()
    config = resumable_config(args.output_dir, resume=args.resume)
    result = train(G, D, SolidSource(), config, g_penalty=g_penalty)
    print(f"finished at kimg {result.kimg}")


if __name__ == "__main__":
    main()
