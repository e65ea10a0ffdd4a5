"""Merge GANs into one class-conditional union GAN, without their training data.

    accelerate launch scripts/merge.py                       # the embedded example sources
    accelerate launch scripts/merge.py org/cats@v1 org/dogs ./cars-model --root cats
    accelerate launch scripts/merge.py --config recipe.yaml --push_to_hub --hub_model_id me/union

Multi-GPU and multi-node come from ``accelerate launch`` itself.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from cocktail.cli import add_training_flags, training_settings  # noqa: E402
from cocktail.errors import CocktailError, run_script  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sources", nargs="*", help="source specs: org/name[@rev], org/name/file.pkl[@rev], folder, "
                                              ".pkl, example:<name>, TorchScript file or module:function "
                                              "(default: the examples). A TorchScript file without a z_dim "
                                              "attribute takes its latent size after '?': 'faces.ts?z_dim=100', "
                                              "or a shape: 'faces.ts?z_dim=100x1x1' (recipe: {spec: faces.ts, "
                                              "z_dim: 100})")
    p.add_argument("--config", help="YAML recipe; flags given here override it")
    p.add_argument("--names", nargs="+", help="class name of each source (default: the sources' own names)")
    p.add_argument("--root", help="name or index of the root source (default: the first)")
    p.add_argument("--method", choices=["cocktail", "average", "scratch", "transfer", "ewc", "freeze_d"])
    p.add_argument("--root_kimg", type=float, help="training length of each rooting stage, in thousands of images")
    p.add_argument("--merge_kimg", type=float, help="training length of the merged model's fine-tuning")
    p.add_argument("--truncation", type=float, help="truncation psi used to sample the sources (paper: 1.0)")
    p.add_argument("--output_dir")
    add_training_flags(p, help_overrides={"resume_from_checkpoint": "'latest' or a checkpoint folder (interrupted "
                                          "merges resume their stage automatically)"})
    p.add_argument("--push_to_hub", action="store_true", default=None)
    p.add_argument("--hub_model_id")
    p.add_argument("--hub_private_repo", action="store_true", default=None)
    p.add_argument("--hub_token", help="default: the token saved by `hf auth login` or HF_TOKEN")
    return p.parse_args(argv)


def flag_layer(args) -> dict:
    """The recipe keys the command line sets explicitly."""
    return {
        "sources": args.sources or None, "names": args.names, "root": args.root, "method": args.method,
        "root_kimg": args.root_kimg, "merge_kimg": args.merge_kimg, "truncation": args.truncation,
        "output_dir": args.output_dir, "mixed_precision": args.mixed_precision, "report_to": args.report_to,
        "push_to_hub": args.push_to_hub, "hub_model_id": args.hub_model_id,
        "hub_private_repo": args.hub_private_repo, "training": training_settings(args),
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    from accelerate import Accelerator

    from cocktail.recipe import build_plan, check_output_dir, load_recipe_file, resolve_recipe

    layers = [load_recipe_file(args.config)] if args.config else []
    recipe = resolve_recipe(*layers, flag_layer(args))
    if recipe["push_to_hub"] and not recipe["hub_model_id"]:
        raise CocktailError("--push_to_hub needs --hub_model_id (e.g. your-name/my-union)")
    output_dir = check_output_dir(recipe["output_dir"])
    accelerator = Accelerator(mixed_precision=recipe["mixed_precision"], log_with=recipe["report_to"],
                              project_dir=str(output_dir))
    log = accelerator.print
    started = time.time()
    plan = build_plan(recipe, token=args.hub_token)
    log(f"merging {len(plan.ingredients)} sources with '{plan.method}' (root: {plan.class_names[plan.root]}) "
        f"on {accelerator.num_processes} process(es), {accelerator.device}")
    from cocktail.methods import run_merge

    run_merge(plan, output_dir, accelerator=accelerator, log=log)
    union_dir = output_dir / "union"
    if accelerator.is_main_process:
        log(f"done in {time.time() - started:.0f} s: union model with classes {', '.join(plan.class_names)} "
            f"in {union_dir}")
        if recipe["push_to_hub"]:
            from cocktail.hub import push_to_hub

            url = push_to_hub(union_dir, recipe["hub_model_id"], private=bool(recipe["hub_private_repo"]),
                              token=args.hub_token)
            log(f"pushed to {url}")
        log(f"open it in the demo:  python app.py --model {union_dir}")
    accelerator.end_training()
    return 0


if __name__ == "__main__":
    run_script(main)
