"""FID, KID and precision/recall of a (union) model, per class and on the union.

    python scripts/evaluate.py example:union                       # against its sources' own samples
    python scripts/evaluate.py outputs/cocktail/union --real_dir trouser=data/fashion-mnist/trouser \\
        --real_dir bag=data/fashion-mnist/bag --num_samples 2000   # and against real image folders
    python scripts/evaluate.py outputs/cocktail/union --write_to_model   # store the figures in union.json

By default each class is scored against samples of the source model its provenance names: no dataset
needed. Writes metrics.md (the table, also printed), metrics.json and metrics.png to --output_dir.
Inception features are cached by content (model weights or folder files, N, seed, truncation), so a
second run, or another model against the same references, only computes what is new.
Needs the evaluation extras: pip install --no-deps -r requirements-eval.txt
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from cocktail.errors import CocktailError, run_script

DEFAULT_NUM_SAMPLES = 200  # per class: a few minutes for the shipped 3-class union on 2 CPU cores


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="model folder, example:<name> or Hub id org/name[@rev]")
    p.add_argument("--real_dir", action="append", default=[], metavar="CLASS=FOLDER",
                   help="image folder of real images for one class (repeat per class)")
    p.add_argument("--skip_sources", action="store_true", help="do not score against the sources' samples")
    p.add_argument("--num_samples", type=int, default=DEFAULT_NUM_SAMPLES,
                   help=f"generated images per class, and per source reference (default {DEFAULT_NUM_SAMPLES})")
    p.add_argument("--num_real", type=int, help="images read from each --real_dir (default: all)")
    p.add_argument("--seed", type=int, default=0, help="model samples use it, references seed + 1")
    p.add_argument("--truncation", type=float, default=1.0, help="truncation psi of every generator (paper: 1)")
    p.add_argument("--batch_size", type=int, help="Inception batch size (default: 16 on CPU, 128 on GPU)")
    p.add_argument("--device", help="default: cuda when available, else cpu")
    p.add_argument("--cache_dir", help="feature cache (default: $HF_HOME/assets/gan-cocktail/metrics)")
    p.add_argument("--output_dir", help="default: outputs/evaluate/<model name>")
    p.add_argument("--write_to_model", action="store_true",
                   help="store the figures in the model folder's union.json (provenance.metrics) and its model card")
    p.add_argument("--no_progress", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def real_dirs(pairs: list[str]) -> dict[str, str]:
    folders = {}
    for pair in pairs:
        name, equals, folder = pair.partition("=")
        if not equals or not name or not folder:
            raise CocktailError(f"--real_dir {pair!r}: expected CLASS=FOLDER")
        folders[name] = folder
    return folders


def main(argv=None) -> int:
    args = parse_args(argv)
    from cocktail import metrics
    from cocktail.union import UnionModel

    folders = real_dirs(args.real_dir)
    if args.skip_sources and not folders:
        raise CocktailError("nothing to score: --skip_sources without any --real_dir")
    metrics.inception_path()  # fail before loading or sampling anything if the extractor is missing
    model = UnionModel.from_pretrained(args.model, load_discriminator=False)
    target = writable_folder(args.model, model) if args.write_to_model else None
    options = dict(num_samples=args.num_samples, num_real=args.num_real, seed=args.seed, truncation=args.truncation,
                   batch_size=args.batch_size, device=args.device, cache_dir=args.cache_dir,
                   progress=not args.no_progress)
    evaluations = []
    for references in (["sources"] if not args.skip_sources else []) + ([folders] if folders else []):
        start = time.perf_counter()
        evaluation = metrics.evaluate_model(model, references, name=args.model, **options)
        evaluation.settings["seconds"] = round(time.perf_counter() - start, 1)
        print(evaluation.markdown())
        evaluations.append(evaluation)
    output_dir = Path(args.output_dir or Path("outputs") / "evaluate" / model_name(args.model))
    write_outputs(evaluations, output_dir)
    if target is not None:
        store_in_model(target, evaluations)
        print(f"stored in {target / 'union.json'} (provenance.metrics) and its model card")
    return 0


def model_name(spec: str) -> str:
    return Path(str(spec).split("@")[0].replace(":", "-")).name or "model"


def writable_folder(spec: str, model) -> Path:
    """The local folder the model was loaded from, to store metrics in; a Hub model's cached snapshot is not
    ours to edit."""
    from cocktail.specs import parse

    if parse(spec).on_the_hub:
        raise CocktailError(f"--write_to_model needs a local model folder, not {spec}: download it "
                            "(hf download ... --local-dir), evaluate that folder, then push it")
    return model.folder


def write_outputs(evaluations, output_dir: Path) -> None:
    from cocktail import metrics

    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "metrics.md").write_text("\n".join(e.markdown() for e in evaluations))
    (output_dir / "metrics.json").write_text(json.dumps([e.as_dict() for e in evaluations], indent=2) + "\n")
    metrics.bar_chart(evaluations, output_dir / "metrics.png")
    print(f"wrote {output_dir / 'metrics.md'}, metrics.json and metrics.png")


def store_in_model(folder: Path, evaluations) -> None:
    """Merge the figures into provenance.metrics (other entries kept) and regenerate a generated card."""
    from cocktail.card import CARD_MARKER, write_model_card
    from cocktail.files import write_json
    from cocktail.folder import INDEX_FILE, read_index
    from cocktail.provenance import Provenance

    index = read_index(folder)
    provenance = Provenance.from_dict(index.get("provenance") or {})
    for evaluation in evaluations:
        provenance.add_metrics(evaluation.provenance_metrics())
    index["provenance"] = provenance.to_dict()
    write_json(folder / INDEX_FILE, index)
    readme = folder / "README.md"
    if not readme.is_file() or CARD_MARKER in readme.read_text(errors="replace"):
        write_model_card(folder)


if __name__ == "__main__":
    run_script(main)
