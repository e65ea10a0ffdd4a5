"""The union model: a (class-conditional) generator, its discriminator, class names, provenance.

One folder layout serves a single-domain source and a merged union alike, on disk, in
``cocktail/assets/`` and on the Hub::

    generator/       config.json + safetensors (the EMA generator)
    discriminator/   config.json + safetensors (so training can go on)
    union.json       class names and provenance (sources, resolved commits, recipe, metrics)
    samples.png      sample grid, one row per class
    README.md        model card
"""

from __future__ import annotations

import copy
import json
import logging
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

from .errors import CocktailError, first_line
from .images import image_grid, to_pil
from .networks import PRESETS, Discriminator, Generator, normalize_2nd_moment
from .specs import Kind, parse

FORMAT_NAME = "gan-cocktail"
FORMAT_VERSION = 1
INDEX_FILE = "union.json"
SAMPLES_FILE = "samples.png"
MAX_CLASS_NAME_BYTES = 100  # a class name becomes part of a folder name (stages/root-<name>-<digest>)

# A tiny architecture for tests and examples: 32 px, a few thousand parameters per layer.
TINY_G_KWARGS = dict(img_resolution=32, **PRESETS["tiny"])
TINY_D_KWARGS = dict(img_resolution=32, channel_base=PRESETS["tiny"]["channel_base"],
                     channel_max=PRESETS["tiny"]["channel_max"])

logger = logging.getLogger(__name__)


class UnionModel:
    """A generator with named classes, loadable from a folder or the Hub, that samples PIL images."""

    def __init__(self, generator: Generator, discriminator: Discriminator | None = None,
                 class_names: Sequence[str] | None = None, provenance: dict | None = None):
        num_classes = max(generator.c_dim, 1)
        class_names = list(class_names) if class_names is not None else [f"class{i}" for i in range(num_classes)]
        for name in class_names:
            check_class_name(name)
        if len(class_names) != num_classes:
            raise CocktailError(
                f"{len(class_names)} class names given for a generator with {num_classes} class(es)")
        if len(set(class_names)) != len(class_names):
            raise CocktailError(f"class names must be unique, got {class_names}")
        if discriminator is not None and discriminator.c_dim != generator.c_dim:
            raise CocktailError(f"generator has c_dim={generator.c_dim} but discriminator has "
                                f"c_dim={discriminator.c_dim}")
        self.generator = generator.eval()
        self.discriminator = discriminator.eval() if discriminator is not None else None
        self.class_names = class_names
        self.provenance = dict(provenance or {})

    # -- loading and saving ------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, spec: str | Path, revision: str | None = None, load_discriminator: bool = True,
                        device: str | torch.device | None = None, torch_dtype: torch.dtype | None = None,
                        token: str | bool | None = None, local_files_only: bool | None = None) -> UnionModel:
        """Load from a local folder, a Hub id (``org/name[@revision]``) or a shipped ``example:<name>``."""
        spec = parse(spec).whole_model()
        if spec.kind in (Kind.EXAMPLE, Kind.FOLDER, Kind.IMAGE_FOLDER):
            folder = spec.path
            where = folder / INDEX_FILE
        else:
            from .hub import resolve  # the Hub client is only needed for remote models

            if revision and spec.on_the_hub and spec.revision is None:
                spec = spec.at(revision)
            resolved = resolve(spec, token=token, local_files_only=local_files_only)
            if resolved.kind != "model":
                raise CocktailError(f"{spec}: is a checkpoint file, not a model folder; convert it first "
                                    "with scripts/convert.py")
            folder = resolved.local_path
            where = f"{spec} ({INDEX_FILE})"
        index = read_index(folder, where)
        generator = _load_network(Generator, folder, "generator", torch_dtype)
        discriminator = None
        if load_discriminator and (folder / "discriminator" / "config.json").is_file():
            discriminator = _load_network(Discriminator, folder, "discriminator", torch_dtype)
        try:
            model = cls(generator, discriminator, index.get("class_names"), index.get("provenance"))
        except CocktailError as err:
            raise CocktailError(f"{where}: {err}") from None
        return model.to(device) if device is not None else model

    def save_pretrained(self, folder: str | Path, write_card: bool = True, seeds_per_class: int = 8) -> Path:
        """Write the folder layout; with ``write_card`` also the sample grid and the model card."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name, network in (("generator", self.generator), ("discriminator", self.discriminator)):
            if network is not None:
                network.save_pretrained(folder / name)
                drop_load_path(folder / name / "config.json")
        index = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "class_names": self.class_names,
                 "provenance": self.provenance}
        (folder / INDEX_FILE).write_text(json.dumps(index, indent=2, default=str) + "\n")
        if write_card:
            self.sample_grid(seeds_per_class=seeds_per_class).save(folder / SAMPLES_FILE)
            from .hub import write_model_card

            write_model_card(folder)
        return folder

    def to(self, device) -> UnionModel:
        self.generator.to(device)
        if self.discriminator is not None:
            self.discriminator.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.generator.parameters()).device

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    # -- sampling ------------------------------------------------------------------------

    def class_index(self, label: str | int) -> int:
        """A class name or index → index, with a clear error listing the classes."""
        if isinstance(label, str) and label not in self.class_names and label.lstrip("-").isdigit():
            label = int(label)
        if isinstance(label, str):
            if label in self.class_names:
                return self.class_names.index(label)
        elif 0 <= int(label) < self.num_classes:
            return int(label)
        raise CocktailError(f"unknown class {label!r}; this model has: {', '.join(self.class_names)}")

    def labels_to_c(self, indices: Iterable[int]) -> torch.Tensor | None:
        """Class indices → the one-hot conditioning the generator expects (None if unconditional)."""
        indices = torch.as_tensor(list(indices), dtype=torch.long)
        if self.generator.c_dim == 0:
            return None
        return torch.nn.functional.one_hot(indices, self.generator.c_dim).float().to(self.device)

    def latents(self, seeds: Iterable[int]) -> torch.Tensor:
        """z for each seed, drawn on CPU so a seed means the same image on every device."""
        zs = [torch.randn([self.generator.z_dim], generator=torch.Generator().manual_seed(int(s))) for s in seeds]
        return torch.stack(zs).to(self.device)

    @torch.no_grad()
    def generate(self, class_label: str | int = 0, seeds: Iterable[int] = (0,), truncation: float = 1.0,
                 noise_mode: str = "const", batch_size: int = 32) -> torch.Tensor:
        """Images in [-1, 1] (NCHW) of one class for the given seeds."""
        seeds = list(seeds)
        index = self.class_index(class_label)
        outputs = []
        for start in range(0, len(seeds), batch_size):
            chunk = seeds[start : start + batch_size]
            z = self.latents(chunk)
            c = self.labels_to_c([index] * len(chunk))
            outputs.append(self.generator(z, c, truncation_psi=truncation, noise_mode=noise_mode).float())
        return torch.cat(outputs)

    def sample(self, class_label: str | int = 0, seeds: Iterable[int] = (0,), truncation: float = 1.0,
               noise_mode: str = "const"):
        """PIL images of one class, one per seed; the same seed always gives the same image."""
        return to_pil(self.generate(class_label, seeds, truncation=truncation, noise_mode=noise_mode))

    def sample_grid(self, seeds_per_class: int = 8, truncation: float = 1.0, seeds: Iterable[int] | None = None):
        """One row per class, the same seeds in every row (so rows are comparable)."""
        seeds = list(seeds) if seeds is not None else list(range(seeds_per_class))
        return image_grid([self.sample(i, seeds, truncation=truncation) for i in range(self.num_classes)])


def check_class_name(name, where: str | Path | None = None) -> str:
    """A class name is data from someone's ``union.json`` or recipe that becomes part of folder names
    (``stages/root-<name>``) and captions: it must not be able to name a path or hide characters.
    Errors start with ``where`` (the model or source), when given."""
    prefix = f"{where}: " if where is not None else ""
    if not isinstance(name, str):
        raise CocktailError(f"{prefix}class name {name!r} is not a string ({type(name).__name__})")
    problems = [
        (not name.strip(), "is empty"),
        (not name.isprintable(), "contains a control or other unprintable character"),
        (name != name.strip(), "starts or ends with a space"),
        (len(name.encode()) > MAX_CLASS_NAME_BYTES, f"is longer than {MAX_CLASS_NAME_BYTES} bytes"),
        (any(sep in name for sep in "/\\"), "contains a path separator"),
        (".." in name, "contains '..'"),
    ]
    reason = next((why for bad, why in problems if bad), None)
    if reason is not None:
        shown = name if len(name) <= 40 else name[:40] + "…"
        raise CocktailError(f"{prefix}class name {shown!r} {reason}")
    return name


def read_index(folder: str | Path, where: str | Path | None = None) -> dict:
    """Read and check ``union.json`` (its class names too) and the presence of ``generator/``;
    errors name ``where`` (default: the index file)."""
    folder = Path(folder)
    index_path = folder / INDEX_FILE
    if not (folder / "generator" / "config.json").is_file():
        raise CocktailError(f"{folder}: not a GAN Cocktail model folder (no generator/config.json)")
    if not index_path.is_file():
        raise CocktailError(f"{folder}: not a GAN Cocktail model folder (no {INDEX_FILE})")
    try:
        index = json.loads(index_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CocktailError(f"{index_path}: not valid JSON ({err})") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT_NAME:
        raise CocktailError(f"{index_path}: not a GAN Cocktail index (expected \"format\": \"{FORMAT_NAME}\")")
    if index.get("format_version", 0) > FORMAT_VERSION:
        raise CocktailError(f"{index_path}: format_version {index['format_version']} is newer than this "
                            f"version of cocktail supports ({FORMAT_VERSION}); upgrade the package")
    names = index.get("class_names")
    if names is not None and not isinstance(names, list):
        raise CocktailError(f"{where or index_path}: class_names is a {type(names).__name__}, not a list")
    for name in names or []:
        check_class_name(name, where or index_path)
    return index


def _load_network(network_cls, folder: Path, subfolder: str, torch_dtype):
    """``from_pretrained`` with expected failures turned into one-line errors naming the file."""
    path = folder / subfolder
    try:
        network = network_cls.from_pretrained(path, torch_dtype=torch_dtype, low_cpu_mem_usage=False)
    except (OSError, ValueError, RuntimeError, TypeError, KeyError) as err:
        message = first_line(err)
        raise CocktailError(f"{path}: cannot load the {subfolder} ({message})") from None
    return network.eval()


def make_conditional(generator: Generator, discriminator: Discriminator | None, num_classes: int, seed: int = 0):
    """Turn unconditional (c_dim=0) networks into ``num_classes``-class ones that draw the same images.

    Generator: the class embedding starts class-independent (zero weight, random bias), and the first
    mapping layer's bias cancels the constant it adds, so w and the image are unchanged for every class.
    Unlike zero-initialised new columns, which sit under the mapping's 0.01 learning-rate multiplier
    and take tens of thousands of steps to carry any class signal, the embedding weight learns at
    full rate: classes separate within the first hundreds of steps.
    Discriminator: the new class map is randomly initialised as usual, and the projection head is
    set so that every class's logit starts equal to the old logit (see below).
    """
    if generator.c_dim != 0 or (discriminator is not None and discriminator.c_dim != 0):
        raise CocktailError("make_conditional expects unconditional networks (c_dim=0)")
    if num_classes < 1:
        raise CocktailError(f"num_classes must be >= 1, got {num_classes}")
    rng_state = torch.random.get_rng_state()
    torch.manual_seed(seed)  # the fresh class layers are part of the result: keep them reproducible
    try:
        new_g = Generator(**network_kwargs(generator, c_dim=num_classes))
        new_d = Discriminator(**network_kwargs(discriminator, c_dim=num_classes)) if discriminator else None
        embed_bias = torch.randn(new_g.mapping.embed.bias.shape)
    finally:
        torch.random.set_rng_state(rng_state)
    new_g.to(generator.device)
    g_state = {**new_g.state_dict(), **generator.state_dict()}
    fc0_old, fc0_new = generator.mapping.fc0, new_g.mapping.fc0
    with torch.no_grad():
        weight = fc0_new.weight.detach().clone()
        # Stored weights are scaled by 1/sqrt(fan_in) at run time, and fan_in grew: compensate.
        weight[:, : generator.z_dim] = fc0_old.weight * math.sqrt(weight.shape[1] / fc0_old.weight.shape[1])
        # A class-independent embedding (zero weight, random bias) feeds the new columns a constant,
        # which the first layer's bias cancels.
        embed = normalize_2nd_moment(embed_bias[None].to(weight.device))[0]
        constant = (weight[:, generator.z_dim :] * fc0_new.weight_gain) @ embed
        g_state["mapping.fc0.weight"] = weight
        g_state["mapping.fc0.bias"] = fc0_old.bias - constant / fc0_new.bias_gain
        g_state["mapping.embed.weight"] = torch.zeros_like(new_g.mapping.embed.weight)
        g_state["mapping.embed.bias"] = embed_bias.to(weight.device)
    new_g.load_state_dict(g_state)

    if new_d is not None:
        new_d.to(discriminator.device)
        old = discriminator.state_dict()
        d_state = {**new_d.state_dict(), **{k: v for k, v in old.items() if not k.startswith("b4.out.")}}
        new_d.load_state_dict(d_state)
        # Logit_c = <out(h), cmap_c> / sqrt(cmap_dim). With out(h) = old_logit(h) * v, where v solves
        # <v, cmap_c> = sqrt(cmap_dim) for every class (least squares, exact while classes <= cmap_dim),
        # each class logit starts equal to the old one, and the head learns classes at full speed.
        with torch.no_grad():
            cmaps = new_d.mapping(None, torch.eye(num_classes, device=discriminator.device))
            target = torch.full([num_classes, 1], math.sqrt(new_d.cmap_dim), device=cmaps.device)
            v = (torch.linalg.pinv(cmaps.double()) @ target.double()).float().squeeze(1)
            new_d.b4.out.weight.copy_(v[:, None] * old["b4.out.weight"])
            new_d.b4.out.bias.copy_(v * old["b4.out.bias"])
    return new_g.eval(), (new_d.eval() if new_d is not None else None)


def network_kwargs(network: Generator | Discriminator, **changes) -> dict:
    """The constructor arguments of a network (its config without diffusers' bookkeeping)."""
    return {**{k: v for k, v in network.config.items() if not k.startswith("_")}, **changes}


def drop_load_path(config_file: Path) -> None:
    """diffusers records where a network was loaded from (``_name_or_path``) and saves it again: a model folder,
    possibly pushed to the Hub, must not carry a path of the machine that wrote it."""
    config = json.loads(config_file.read_text())
    if config.pop("_name_or_path", None) is not None:
        config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def average_networks(networks: Sequence[torch.nn.Module]) -> torch.nn.Module:
    """A copy of the first network whose every parameter and float buffer is the mean over all (on its device)."""
    if not networks:
        raise CocktailError("nothing to average")
    states = [n.state_dict() for n in networks]
    keys = list(states[0])
    for i, state in enumerate(states[1:], start=1):
        if list(state) != keys or any(state[k].shape != states[0][k].shape for k in keys):
            raise CocktailError(f"cannot average: network {i} does not share the architecture of network 0")
    averaged = copy.deepcopy(networks[0])
    averaged.load_state_dict({
        k: torch.stack([s[k].float().to(states[0][k].device) for s in states]).mean(0).to(states[0][k].dtype)
        if states[0][k].is_floating_point() else states[0][k]
        for k in keys
    })
    return averaged
