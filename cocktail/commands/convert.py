"""Convert a StyleGAN2-ADA PyTorch checkpoint into a GAN Cocktail model folder, without running its code.

    python scripts/convert.py network-snapshot-000400.pkl --output_dir models/cats --class_name cat
    python scripts/convert.py cond.pkl --output_dir models/mix --class_name cat --class_name dog --class_name car

The EMA generator becomes generator/, the discriminator discriminator/ (so training can go on).
Only the network weights and constructor arguments are read: the Python code such pickles embed is
never imported or run, and any other object in the file is refused.
"""

from __future__ import annotations

import argparse

from cocktail.errors import run_script


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="StyleGAN2-ADA network pickle (network-snapshot-*.pkl)")
    p.add_argument("--output_dir", required=True, help="model folder to write")
    p.add_argument("--class_name", action="append", dest="class_names",
                   help="class name (repeat once per class for a conditional checkpoint; default: the file "
                        "name, or class0, class1, … for a conditional checkpoint)")
    p.add_argument("--no_card", action="store_true", help="skip the sample grid and the model card")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from cocktail.convert import convert_stylegan2_pkl

    folder = convert_stylegan2_pkl(args.checkpoint, args.output_dir, class_names=args.class_names,
                                   write_card=not args.no_card)
    print(f"converted {args.checkpoint} -> {folder}")
    return 0


if __name__ == "__main__":
    run_script(main)
