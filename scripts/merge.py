"""Merge GANs into one class-conditional union GAN, without their training data.

    accelerate launch scripts/merge.py                       # the embedded example sources
    accelerate launch scripts/merge.py org/cats@v1 org/dogs ./cars-model --root cats
    accelerate launch scripts/merge.py --config recipe.yaml --push_to_hub --hub_model_id me/union
    accelerate launch scripts/merge.py --extend example:union example:dress   # one more class for a union

Multi-GPU and multi-node come from ``accelerate launch`` itself.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from cocktail.cli import add_training_flags, training_settings, use_cpu_threads  # noqa: E402
from cocktail.errors import CocktailError, run_script  # noqa: E402
from cocktail.merge import MERGE_METHODS, MERGE_TRAINING  # noqa: E402
from cocktail.merge.ewc import FISHER_BATCH  # noqa: E402
from cocktail.recipe import DEFAULTS  # noqa: E402
from cocktail.training import TrainingConfig  # noqa: E402

# Merge settings: flag → help. Their defaults come from MergePlan (through the recipe's DEFAULTS), the one
# place they are defined.
PLAN_FLAGS = {
    "root_kimg": "training length of each rooting stage (methods that root), in thousands of images",
    "merge_kimg": "training length of the final stage: all of a method that does not root, the merged "
                  "model's fine-tuning after rooting",
    "truncation": "truncation psi used to sample the sources (paper: 1.0)",
    "ewc_g_mapping": "EWC: penalty weight on G's mapping network",
    "ewc_g_synthesis": "EWC: penalty weight on G's synthesis network",
    "ewc_d": "EWC: penalty weight on D (the class embedding and projection head are never penalised)",
    "ewc_samples": f"EWC: generated samples behind the Fisher information (a multiple of {FISHER_BATCH}; "
                   "estimated once per root and cached)",
    "freeze_d_blocks": "Freeze-D: discriminator blocks kept frozen, counted from the image side (1 = the "
                       "full-resolution block b<res>, 2 = it and b<res/2>, …); b4 with the output head always "
                       "trains, so at most log2(resolution) - 2",
    "distill_weight": "distillation methods: weight of the paired loss |G(z, i) - teacher_i(z)|^2",
    "distill_batch": "distillation methods: latents of the paired loss per G step",
}


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
    p.add_argument("--method", choices=list(MERGE_METHODS), help=f"(default: {DEFAULTS['method']})")
    for flag, text in PLAN_FLAGS.items():
        p.add_argument(f"--{flag}", type=type(DEFAULTS[flag]), help=f"{text} (default: {DEFAULTS[flag]:g})")
    p.add_argument("--conditional_rooting", action="store_true", default=None,
                   help="root as the authors' code does: extend the root to one class per source first and root "
                        "source i with its samples labelled i (methods that root only)")
    p.add_argument("--class_percentages", type=float, nargs="+",
                   help="share of each source in the final stage's mixture, in source order (default: equal)")
    p.add_argument("--distill_teachers", choices=["parents", "sources"],
                   help="distillation methods: pull class i towards its parent (root or rooted model) or its "
                        "source (default: parents where the method roots, else sources)")
    p.add_argument("--output_dir", help=f"(default: {DEFAULTS['output_dir']})")
    p.add_argument("--overwrite_output_dir", action="store_true", default=None,
                   help="replace a different merge found in --output_dir (it is kept until this run's first "
                        "stage is done); without it such a folder stops the run")
    training = {**dataclasses.asdict(TrainingConfig()), **MERGE_TRAINING}
    add_training_flags(p, help_overrides={"resume_from_checkpoint": "'latest' or a checkpoint folder of one stage, "
                                          "which it resumes (interrupted merges resume their stage automatically)"},
                       shown_defaults={**training, "learning_rate": training["g_lr"]})
    p.add_argument("--push_to_hub", action="store_true", default=None)
    p.add_argument("--hub_model_id")
    p.add_argument("--hub_private_repo", action="store_true", default=None)
    p.add_argument("--hub_token", help="default: the token saved by `hf auth login` or HF_TOKEN")
    return p


def parse_args(argv=None):
    return build_parser().parse_args(argv)


def flag_layer(args) -> dict:
    """The recipe keys the command line sets explicitly."""
    return {
        "sources": args.sources or None, "names": args.names, "root": args.root, "extend": args.extend,
        "method": args.method,
        **{flag: getattr(args, flag) for flag in PLAN_FLAGS}, "conditional_rooting": args.conditional_rooting,
        "class_percentages": args.class_percentages, "distill_teachers": args.distill_teachers,
        "overwrite_output_dir": args.overwrite_output_dir,
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
