"""Scoring a model per class and on the union against references, and the shapes the results are kept in.

A union is judged against references for each of its classes: by default its sources' own samples
(no dataset needed: "did merging keep each source?"), or real image folders when the user has some.
The union scope takes each class in the proportions of the reference mixture (equal for source
references), a stratified draw of "classes at random", against the pooled references.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import CocktailError
from ..provenance import Provenance
from ..sources import ModelSource
from ..specs import parse
from ..union import UnionModel
from .features import features_for_source, is_image_folder
from .inception import EXTRACTOR_NAME, default_device
from .statistics import Scores, compare

METRICS = ("fid", "kid", "precision", "recall")
UNION = "union"


@dataclass
class Evaluation:
    """Scores of a model per class and on the union against one kind of reference."""

    model: str
    reference: str  # "sources" (the source generators' samples) or "real" (image folders)
    scores: dict[str, Scores]  # class names in the model's order, then "union"
    settings: dict = field(default_factory=dict)

    def markdown(self) -> str:
        lines = [f"Model `{self.model}` against **{self.reference}** ({self.reference_text()}); "
                 f"{EXTRACTOR_NAME}; seed {self.settings.get('seed')}, truncation {self.settings.get('truncation')}.",
                 "", "| | FID | KID ×10³ | precision | recall | N model | N reference |",
                 "| --- | --- | --- | --- | --- | --- | --- |"]
        for scope, s in self.scores.items():
            lines.append(f"| {scope} | {s.fid:.2f} | {s.kid * 1e3:.2f} | {s.precision:.3f} | {s.recall:.3f} "
                         f"| {s.num_model} | {s.num_reference} |")
        return "\n".join(lines) + "\n"

    def reference_text(self) -> str:
        texts = {"sources": "each source generator's own samples", "real": "image folders"}
        return texts.get(self.reference, "the given references")

    def as_dict(self) -> dict:
        return {"model": self.model, "reference": self.reference, "feature_extractor": EXTRACTOR_NAME,
                "settings": self.settings, "scores": {scope: asdict(s) for scope, s in self.scores.items()}}

    def provenance_metrics(self) -> dict:
        """For ``union.json``'s provenance "metrics": ``{"fid_<reference>": {scope: value}, …}`` plus a note of N,
        the shape the model card (eval_results and its metrics table) and the demo read."""
        metrics = {f"{m}_{self.reference}": {scope: getattr(s, m) for scope, s in self.scores.items()}
                   for m in METRICS}
        sizes = "; ".join(f"{scope} {s.num_model} vs {s.num_reference}" for scope, s in self.scores.items())
        metrics[f"n_{self.reference}"] = (f"generated vs reference images ({self.reference_text()}): {sizes}; "
                                          f"{EXTRACTOR_NAME}; seed {self.settings.get('seed')}, "
                                          f"truncation {self.settings.get('truncation')}")
        return metrics


def evaluate_model(model: UnionModel | str | Path, references: str | Mapping[str, str | Path] = "sources", *,
                   num_samples: int = 200, num_real: int | None = None, seed: int = 0, truncation: float = 1.0,
                   batch_size: int | None = None, device=None, cache_dir: str | Path | None = None,
                   extractor: Callable | None = None, progress: bool = True, k: int = 3,
                   name: str | None = None) -> Evaluation:
    """Score a model per class and on the union.

    ``references``: ``"sources"`` (each class against samples of the source its provenance names) or a
    mapping class → image folder (or any source spec). ``num_samples`` generated images per class (and
    per source reference); ``num_real`` caps the images read from each folder (default all). The model
    is sampled with ``seed`` and the references with ``seed + 1``, so a source scored against itself
    gives the finite-sample floor rather than 0.
    """
    device = torch.device(device or default_device())
    name = name or (str(model) if isinstance(model, str | Path) else "model")
    if not isinstance(model, UnionModel):
        model = UnionModel.from_pretrained(model, load_discriminator=False)
    kind, specs = ("sources", source_references(model)) if references == "sources" else (
        "real" if all(is_image_folder(s) for s in references.values()) else "reference",
        _checked_references(model, references))
    resolution = model.generator.img_resolution
    common = dict(batch_size=batch_size, device=device, cache_dir=cache_dir, extractor=extractor, progress=progress)
    model_features, reference_features = {}, {}
    for class_name, spec in specs.items():
        count = num_real if is_image_folder(spec) else num_samples
        reference_features[class_name] = features_for_source(
            spec, count, resolution=resolution, seed=seed + 1, truncation=truncation,
            description=f"{class_name}: {kind}", **common)
        sampler = ModelSource(model.generator, class_index=model.class_index(class_name), truncation=truncation)
        model_features[class_name] = features_for_source(sampler, num_samples, seed=seed,
                                                         description=f"{class_name}: model", **common)
    scores = {c: compare(model_features[c], reference_features[c], k=k, seed=seed, device=device) for c in specs}
    if len(specs) > 1:
        union_model, union_reference = union_features(model_features, reference_features)
        scores[UNION] = compare(union_model, union_reference, k=k, seed=seed, device=device)
    settings = {"num_samples": num_samples, "num_real": num_real, "seed": seed, "truncation": truncation,
                "k": k, "references": {c: str(s) for c, s in specs.items()}}
    return Evaluation(name, kind, scores, settings)


def union_features(model_features: Mapping[str, np.ndarray], reference_features: Mapping[str, np.ndarray]):
    """Pooled features: each class of the model in the reference mixture's proportions (largest class whole)."""
    largest = max(len(f) for f in reference_features.values())
    counts = {c: max(1, round(len(model_features[c]) * len(reference_features[c]) / largest))
              for c in reference_features}
    pooled_model = np.concatenate([model_features[c][:n] for c, n in counts.items()])
    return pooled_model, np.concatenate(list(reference_features.values()))


def source_references(model: UnionModel) -> dict[str, str]:
    """Class → the spec of the source it was merged from, pinned to the resolved commit when known."""
    sources = Provenance.from_dict(model.provenance).sources
    if not sources:
        raise CocktailError("this model's provenance names no sources to compare with; give real image folders "
                            "instead (--real_dir class=folder)")
    specs = {}
    for position, source in enumerate(sources):
        name = str(source.name or model.class_names[position])
        spec = source.spec or source.repo_id
        if name not in model.class_names or not spec:
            raise CocktailError(f"provenance source {source.to_dict()} matches no class of the model "
                                f"({', '.join(model.class_names)}) or names no spec")
        specs[name] = _pinned(str(spec), source.commit if source.repo_id else None)
    return {c: specs[c] for c in model.class_names if c in specs}


def _pinned(spec: str, commit: str | None) -> str:
    """``org/name@main#cls`` with a known commit → ``org/name@<commit>#cls``: exactly the merged weights."""
    return parse(spec).at(commit).text if commit else spec


def _checked_references(model: UnionModel, references: Mapping[str, str | Path]) -> dict[str, str]:
    unknown = [c for c in references if c not in model.class_names]
    if unknown or not references:
        raise CocktailError(f"references name no class or unknown classes {unknown}; "
                            f"the model has: {', '.join(model.class_names)}")
    return {c: str(references[c]) for c in model.class_names if c in references}
