"""The model folder: one layout for a single-domain source and a merged union alike, on disk, in
``cocktail/assets/`` and on the Hub::

    generator/       config.json + safetensors (the EMA generator)
    discriminator/   config.json + safetensors (so training can go on)
    union.json       class names and provenance (sources, resolved commits, recipe, metrics)
    samples.png      sample grid, one row per class
    README.md        model card (``card.py``)

Reading checks everything a folder from someone else's repo could get wrong; writing refuses what
reading would refuse. Bare networks are enough for both, so a converted checkpoint is written the
same way as a union model.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from .errors import CocktailError, first_line
from .networks import Discriminator, Generator
from .sampling import class_grid

FORMAT_NAME = "gan-cocktail"
FORMAT_VERSION = 1
INDEX_FILE = "union.json"
SAMPLES_FILE = "samples.png"
SEEDS_PER_CLASS = 8  # columns of the sample grid
MAX_CLASS_NAME_BYTES = 100  # a class name becomes part of a folder name (stages/root-<name>-<digest>)


# ---------------------------------------------------------------------------------------
# Class names
# ---------------------------------------------------------------------------------------


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


def checked_class_names(generator: Generator, discriminator: Discriminator | None,
                        class_names: Sequence[str] | None) -> list[str]:
    """The class names of a model (default ``class0…``): one usable, unique name per class of the generator,
    whose discriminator (if any) has the same classes."""
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
    return class_names


# ---------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------


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


def read_networks(folder: Path, load_discriminator: bool = True,
                  torch_dtype=None) -> tuple[Generator, Discriminator | None]:
    """The generator, and the discriminator when asked for and present (eval mode)."""
    generator = _load_network(Generator, folder, "generator", torch_dtype)
    discriminator = None
    if load_discriminator and (folder / "discriminator" / "config.json").is_file():
        discriminator = _load_network(Discriminator, folder, "discriminator", torch_dtype)
    return generator, discriminator


def _load_network(network_cls, folder: Path, subfolder: str, torch_dtype):
    """``from_pretrained`` with expected failures turned into one-line errors naming the file."""
    path = folder / subfolder
    try:
        network = network_cls.from_pretrained(path, torch_dtype=torch_dtype, low_cpu_mem_usage=False)
    except (OSError, ValueError, RuntimeError, TypeError, KeyError) as err:
        message = first_line(err)
        raise CocktailError(f"{path}: cannot load the {subfolder} ({message})") from None
    return network.eval()


# ---------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------


def write_model_folder(folder: str | Path, generator: Generator, discriminator: Discriminator | None,
                       class_names: Sequence[str], provenance: dict, *,
                       seeds_per_class: int | None = SEEDS_PER_CLASS) -> Path:
    """The networks, ``union.json`` and (unless ``seeds_per_class`` is None) the sample grid; the model card,
    which is rendered from these files, is ``card.write_model_card``'s."""
    class_names = checked_class_names(generator, discriminator, class_names)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, network in (("generator", generator), ("discriminator", discriminator)):
        if network is not None:
            network.save_pretrained(folder / name)
            _drop_load_path(folder / name / "config.json")
    index = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "class_names": class_names,
             "provenance": provenance}
    (folder / INDEX_FILE).write_text(json.dumps(index, indent=2, default=str) + "\n")
    if seeds_per_class is not None:
        class_grid(generator, len(class_names), range(seeds_per_class)).save(folder / SAMPLES_FILE)
    return folder


def _drop_load_path(config_file: Path) -> None:
    """diffusers records where a network was loaded from (``_name_or_path``) and saves it again: a model folder,
    possibly pushed to the Hub, must not carry a path of the machine that wrote it."""
    config = json.loads(config_file.read_text())
    if config.pop("_name_or_path", None) is not None:
        config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
