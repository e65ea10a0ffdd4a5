"""GAN Cocktail and its baselines, each a way to set up the one training loop.

* ``root``: the root's G_ema and D fine-tuned on samples of one other source (GAN_{r→i}).
* ``merge``: every parameter and buffer averaged over root and rooted models, made
  conditional (class c ↔ source c) and fine-tuned on the labelled mixture of all sources.
* ``cocktail`` = root every non-root source, then merge (the paper's method).
* Baselines on the same generated data: ``scratch``, ``transfer`` (TransferGAN), ``ewc``,
  ``freeze_d`` and ``average`` (naive averaging of the raw sources, the paper's failure case).

A comparison of methods is only fair if no stage's result is silently someone else's. So
``<output_dir>/run.json`` records what decides the whole merge (sources down to their weights, method,
recipe), and each stage lives in ``<output_dir>/stages/<method>/<stage>-<digest of its inputs>/`` with
those inputs recorded in it: an interrupted merge resumes at its stage (and the checkpoint inside it),
and anything else that differs stops the run before training.

One job per module: ``ingredients`` (the sources), ``plan`` (the validated plan and its recorded recipe),
``methods`` (the registry and one module per family), ``stages`` (stages, their folders and records),
``run`` (``run_merge``), ``surgery`` (networks made conditional, grown, averaged), ``ewc`` (Fisher
information and EWC's penalty).
"""

from .ingredients import Ingredient, load_ingredient, load_union_classes
from .methods import MERGE_METHODS, MergeMethod, register_method
from .plan import MERGE_TRAINING, MergePlan, plan_defaults, plan_recipe
from .run import run_merge
from .stages import STAGE_DONE

__all__ = [
    "MERGE_METHODS",
    "MERGE_TRAINING",
    "STAGE_DONE",
    "Ingredient",
    "MergeMethod",
    "MergePlan",
    "load_ingredient",
    "load_union_classes",
    "plan_defaults",
    "plan_recipe",
    "register_method",
    "run_merge",
]
