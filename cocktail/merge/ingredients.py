"""The sources of a merge: each spec loaded once, as our model or a foreign sampler, with its provenance."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import CocktailError
from ..files import file_sha256, json_digest, weights_digest
from ..sources import ModelSource, Source, load_source, picked_class
from ..specs import Kind, SourceRecord, Spec, parse
from ..union import UnionModel, open_spec


@dataclass
class Ingredient:
    """One source of the merge: its name (the union's class name), where it came from, and how to sample it."""

    name: str
    spec: str
    provenance: dict
    model: UnionModel | None = None  # our architecture; None for foreign samplers
    class_index: int = 0  # which class of a multi-class model this source draws

    def sampler(self, label: int, num_classes: int, resolution: int, truncation: float, device) -> Source:
        if self.model is not None:
            return ModelSource(self.model.generator, label=label, num_classes=num_classes, truncation=truncation,
                               resolution=resolution, class_index=self.class_index).to(device)
        return load_source(self.spec, resolution, label=label, num_classes=num_classes, device=device,
                           truncation=truncation)

    def fingerprint(self) -> dict:
        """What identifies this source's images: its provenance plus a digest of its weights (or file)."""
        if self.model is not None:
            return {"name": self.name, **self.provenance,
                    "weights": weights_digest(self.model.generator, self.model.discriminator)}
        path = parse(self.spec).path
        if path.is_file():
            return {"name": self.name, **self.provenance, "sha256": file_sha256(path)}
        if path.is_dir():
            listing = sorted((str(f.relative_to(path)), f.stat().st_size) for f in path.rglob("*") if f.is_file())
            return {"name": self.name, **self.provenance, "listing": json_digest(listing)}
        return {"name": self.name, **self.provenance}


def load_ingredient(spec: str | Spec, name: str | None = None, token=None) -> Ingredient:
    """A source spec → an Ingredient: our model (folder, ``example:``, Hub id, ``.pkl``) or a foreign sampler.

    ``spec#class`` picks one class of a multi-class model.
    """
    spec = parse(spec)
    opened = _open_model(spec, token)
    if opened is None:
        load_source(spec, 32, device="cpu")  # fail now, not after hours of rooting, if it cannot be loaded
        return Ingredient(name or _default_name(spec), spec.text, SourceRecord(spec.text).to_dict())
    model, provenance = opened
    index = picked_class(model, spec)
    default = model.class_names[index] if model.num_classes > 1 or model.class_names[0] != "class0" else None
    return Ingredient(name or default or _default_name(spec), spec.text, provenance, model, index)


def load_union_classes(spec: str | Spec, token=None) -> list[Ingredient]:
    """A union to extend (``--extend``) → one Ingredient per class, all sharing the one loaded model: the
    union is the root, and each old class is drawn from the union itself."""
    spec = parse(spec)
    if spec.class_pick is not None:
        raise CocktailError(f"--extend {spec.text}: a union is extended as a whole; drop '#{spec.class_pick}'")
    opened = _open_model(spec, token)
    if opened is None:
        raise CocktailError(f"--extend {spec.text}: not a GAN Cocktail / StyleGAN2 model; only a union of ours "
                            "(a folder, example:, Hub id or .pkl) can be extended")
    model, provenance = opened
    if model.generator.c_dim == 0:
        raise CocktailError(f"--extend {spec.text}: a single-domain model, not a union; merge it as a source "
                            f"instead (scripts/merge.py {spec.text} NEW_SOURCE …)")
    return [Ingredient(name, f"{spec.text}#{name}", {**provenance, "spec": f"{spec.text}#{name}"}, model, i)
            for i, name in enumerate(model.class_names)]


def _open_model(spec: Spec, token=None) -> tuple[UnionModel, dict] | None:
    """Our model behind a spec with its provenance record, or None for a foreign sampler."""
    opened = open_spec(spec, token=token)
    return (opened.model, opened.record.to_dict()) if opened.model is not None else None


def _default_name(spec: Spec) -> str:
    if spec.kind is Kind.ENTRY_POINT:  # faces:sample → faces, pkg.faces:sample → faces
        return spec.target.partition(":")[0].rpartition(".")[2]
    last = re.split(r"[/:]", (spec.file or spec.target).rstrip("/"))[-1]
    return last.removesuffix(Path(last).suffix) or "source"
