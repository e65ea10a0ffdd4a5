"""Merge GANs into one class-conditional union GAN, without their training data.

    accelerate launch scripts/merge.py                       # the embedded example sources
    accelerate launch scripts/merge.py org/cats@v1 org/dogs ./cars-model --root cats
    accelerate launch scripts/merge.py --config recipe.yaml --push_to_hub --hub_model_id me/union
    accelerate launch scripts/merge.py --extend example:union example:dress   # one more class for a union

Multi-GPU and multi-node come from ``accelerate launch`` itself.
"""

from __future__ import annotations

import argparse
import time

from cocktail.cli import add_training_flags, training_settings, use_cpu_threads
from cocktail.errors import CocktailError, run_script
from cocktail.merge import MergePlan
from cocktail.recipe import DEFAULTS
from cocktail.settings import add_flags, flag_values


def build_parser() -> argparse.ArgumentParser:
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
    p.add_argument("--extend", metavar="UNION",
                   help="grow this union instead of merging from scratch: the sources become new classes, the union "
                        "is the root (its classes are not re-rooted and are drawn from the union itself)")
    defaults = MergePlan([])  # the merge settings (their flags) and defaults, declared once there
    add_flags(p, defaults)
    p.add_argument("--output_dir", help=f"(default: {DEFAULTS['output_dir']})")
    p.add_argument("--overwrite_output_dir", action="store_true", default=None,
                   help="replace a different merge found in --output_dir (it is kept until this run's first "
                        "stage is done); without it such a folder stops the run")
    add_training_flags(p, defaults.training,
                       help_overrides={"resume_from_checkpoint": "'latest' or a checkpoint folder of one stage, which "
                                       "it resumes (interrupted merges resume their stage automatically)"})
    p.add_argument("--push_to_hub", action="store_true", default=None,
                   help="upload the union, its model card and samples to the Hub when the merge is done")
    p.add_argument("--hub_model_id", help="the Hub repository to push to (e.g. your-name/my-union)")
    p.add_argument("--hub_private_repo", action="store_true", default=None,
                   help="create the Hub repository as private (an existing one keeps its visibility)")
    p.add_argument("--hub_token", help="default: the token saved by `hf auth login` or HF_TOKEN")
    return p


def parse_args(argv=None):
    return build_parser().parse_args(argv)


def flag_layer(args) -> dict:
    """The recipe keys the command line sets explicitly."""
    return {
        "sources": args.sources or None, "names": args.names, "root": args.root, "extend": args.extend,
        **flag_values(args, MergePlan), "overwrite_output_dir": args.overwrite_output_dir,
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
    threads = use_cpu_threads(args.cpu_threads, accelerator.device, accelerator.num_processes)
    log = accelerator.print
    started = time.time()
    plan = build_plan(recipe, token=args.hub_token, world=accelerator.num_processes)
    what = (f"extending the union {recipe['extend']} ({', '.join(plan.class_names[: plan.base_classes])}) by "
            f"{', '.join(plan.class_names[plan.base_classes :])}" if plan.base_classes else
            f"merging {len(plan.ingredients)} sources")
    log(f"{what} with '{plan.method}' (root: {plan.class_names[plan.root]}) "
        f"on {accelerator.num_processes} process(es), {accelerator.device}"
        + (f", {threads} CPU threads each" if threads else ""))
    from cocktail.merge import run_merge

    run_merge(plan, output_dir, accelerator=accelerator, log=log, overwrite=bool(recipe["overwrite_output_dir"]))
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
