"""What ``union.json`` records of how a model was made: one typed record, ``Provenance``, that every writer
builds (conversion, training a source, a merge, stored metrics) and every reader interprets (the model card,
the demo, the metrics, the comparison with the sources).

The dict it writes is the dict union.json has always held, key for key and in the same order, because the
run and stage digests and the files already published depend on it: a record read and written back gives
its keys in the order they were read, then the fields set since; keys this version does not know are kept
as they were. A record made in code writes the core keys (``CORE_KEYS``) always, then the optional ones that
are set, in the order of the fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, Field, dataclass, field, fields

from .errors import CocktailError
from .specs import SourceRecord

CORE_KEYS = ("method", "root", "sources", "recipe", "kimg")  # what every writer has always written


@dataclass
class Extension:
    """``provenance.extends``: the union this one grew from (``--extend``), as the spec it was named by, its
    classes (the first classes of this one) and its own provenance, which may extend another."""

    spec: str
    classes: list[str]
    provenance: Provenance

    def to_dict(self) -> dict:
        return {"spec": self.spec, "classes": self.classes, "provenance": self.provenance.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping) -> Extension:
        if (not isinstance(data, Mapping) or set(data) != {"spec", "classes", "provenance"}
                or not isinstance(data["spec"], str) or not isinstance(data["classes"], list)):
            got = sorted(data) if isinstance(data, Mapping) else type(data).__name__
            raise CocktailError(f"provenance 'extends' is not {{spec, classes: [...], provenance}} (got {got})")
        return cls(data["spec"], data["classes"], Provenance.from_dict(data["provenance"]))


@dataclass
class Provenance:
    """How a model was made: its sources (one per class), the method and recipe that merged them, and what
    was measured of it since."""

    method: str | None = None  # the merge method; None for a model that was not merged
    root: str | None = None  # the class whose source the merge started from
    sources: list[SourceRecord] = field(default_factory=list)
    recipe: dict = field(default_factory=dict)  # the settings that decided the result
    kimg: dict = field(default_factory=dict)  # per stage ("train" for a trained source)
    ema_rampup: dict | None = None  # per stage, as "auto" resolved it
    weight_distances: dict | None = None  # per source: L2 distance to the root, rooted and raw
    extends: Extension | None = None
    metrics: dict | None = None  # stored by scripts/evaluate.py --write_to_model
    produced_by: dict | None = None  # command, hardware and time, written by hand for the shipped models
    other: dict = field(default_factory=dict)  # keys this version does not know, kept as they were read
    # The keys written first, in this order: as they were read, or the core keys for a record made in code.
    key_order: tuple[str, ...] = field(default=CORE_KEYS, repr=False, compare=False)

    def to_dict(self) -> dict:
        known = [f for f in fields(self) if f.name not in ("other", "key_order")]
        set_since = [f.name for f in known if f.name not in self.key_order and getattr(self, f.name) != _default(f)]
        values = {f.name: getattr(self, f.name) for f in known} | self.other
        values["sources"] = [source.to_dict() for source in self.sources]
        if self.extends is not None:
            values["extends"] = self.extends.to_dict()
        return {key: values[key] for key in (*self.key_order, *set_since, *self.other) if key in values}

    @classmethod
    def from_dict(cls, data: Mapping) -> Provenance:
        if not isinstance(data, Mapping):
            raise CocktailError(f"provenance is a {type(data).__name__}, not a mapping")
        known = {f.name for f in fields(cls)} - {"other", "key_order"}
        values = {key: value for key, value in data.items() if key in known}
        if "sources" in values:
            if not isinstance(values["sources"], list):
                raise CocktailError(f"provenance 'sources' is a {type(values['sources']).__name__}, not a list")
            values["sources"] = [_source(i, entry) for i, entry in enumerate(values["sources"])]
        if values.get("extends") is not None:
            values["extends"] = Extension.from_dict(values["extends"])
        return cls(**values, other={key: value for key, value in data.items() if key not in known},
                   key_order=tuple(data))

    def hub_repos(self) -> list[str]:
        """The Hub repos the sources came from, each once, in source order: the card's ``base_model``."""
        return list(dict.fromkeys(source.repo_id for source in self.sources if source.repo_id))

    def lineage(self) -> list[Extension]:
        """The unions this model grew from, newest first."""
        chain, step = [], self.extends
        while step is not None:
            chain.append(step)
            step = step.provenance.extends
        return chain

    def add_metrics(self, figures: Mapping) -> None:
        """Store figures in ``metrics``, keeping the entries they do not replace."""
        self.metrics = {**(self.metrics if isinstance(self.metrics, dict) else {}), **figures}


def _default(declared: Field):
    return declared.default_factory() if declared.default is MISSING else declared.default


def _source(position: int, entry) -> SourceRecord:
    try:
        return SourceRecord.from_dict(entry)
    except CocktailError as err:
        raise CocktailError(f"provenance source {position}: {err}") from None
