"""Where training images come from: one of our models, a foreign sampler, an image folder, or a mixture.

Every source yields ``(images, labels)``: float32 images in [-1, 1] shaped [B, C, R, R] and int64 labels
[B], both on the requested device. Sampling is reproducible for a seeded ``torch.Generator``: the random
draws (latents, image indices, class counts) come from that generator on its own device (a CPU generator
gives the same latents on every device), and randomness inside a network (StyleGAN2's per-layer noise)
runs under the device's global RNG seeded from the generator, restored afterwards.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import math
import os
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
import torch.nn.functional as F

from .errors import CocktailError
from .images import image_files, read_image, resize_images, to_uint8
from .networks import Generator
from .specs import ENTRY_POINT, Kind, Spec, latent_shape, parse
from .union import UnionModel, open_spec


class Source:
    """Yields labelled image batches at ``resolution`` with labels in [0, num_classes)."""

    num_classes: int
    resolution: int
    channels: int = 3

    def largest_call(self, batch_size: int) -> int | None:
        """How many pixels the largest single generator call makes to draw ``batch_size`` images (expected,
        for a mixture), at the resolution it generates at before any resize; None if unknown (a foreign
        sampler). The loop judges by it how many iterations of reals to draw at once (``training.reals``)."""
        return batch_size * self.resolution**2

    def sample(self, batch_size: int, device, generator: torch.Generator | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def to(self, device) -> Source:
        """Move internal models to ``device`` (sampling elsewhere moves them lazily too)."""
        return self


class ModelSource(Source):
    """One of our generators, frozen: sampled like the paper's sources (ψ = 1 by default, random noise).

    ``label`` is the class the images are labelled with; ``class_index`` is the class a conditional G
    draws (defaults to ``label``).
    """

    def __init__(self, G: Generator, label: int = 0, num_classes: int = 1, truncation: float = 1.0,
                 resolution: int | None = None, class_index: int | None = None):
        _check_label(label, num_classes)
        if G.c_dim:
            class_index = label if class_index is None else class_index
            if not 0 <= class_index < G.c_dim:
                raise CocktailError(f"class index {class_index} is out of range for a generator with "
                                    f"{G.c_dim} classes")
        elif class_index not in (None, 0):
            raise CocktailError(f"class index {class_index} given for an unconditional generator")
        self.G = copy.deepcopy(G).eval().requires_grad_(False)
        self.to(self.G.device)
        self.label, self.num_classes, self.truncation = label, num_classes, truncation
        self.class_index = class_index if G.c_dim else None
        self.resolution = _check_resolution(resolution or G.img_resolution)
        self.channels = G.img_channels

    def largest_call(self, batch_size: int) -> int:
        return batch_size * self.G.img_resolution**2

    def to(self, device) -> ModelSource:
        # Channels-last convolutions run about twice as fast on CPU at training batch sizes
        # (benchmarks/merge_stage.py); the copy is this source's own, so nothing else sees the layout.
        memory_format = torch.channels_last if torch.device(device).type == "cpu" else torch.preserve_format
        self.G.to(device, memory_format=memory_format)
        return self

    @torch.no_grad()
    def sample(self, batch_size, device, generator=None):
        device = _canonical(device)
        if self.G.device != device:
            self.to(device)
        z = torch.randn([batch_size, self.G.z_dim], generator=generator, device=_draw_device(generator))
        z = z.to(device)
        c = None
        if self.class_index is not None:
            c = F.one_hot(torch.full([batch_size], self.class_index, device=device), self.G.c_dim).float()
        with _network_rng(generator, device):
            images = self.G(z, c, truncation_psi=self.truncation, noise_mode="random")
        return resize_images(images, self.resolution, self.channels), _labels(self.label, batch_size, device)


class ForeignSource(Source):
    """Any sampler whose samples we want; only images cross over, resized to our resolution.

    * a TorchScript file, called as ``module(z)`` with z ~ N(0, I) of size ``module.z_dim`` (an integer
      attribute of the scripted module), or of the size or shape given as ``z_dim=`` (the spec option
      ``file.ts?z_dim=100``);
    * a ``module:function`` entry point (or a callable), called as
      ``function(batch_size, generator, device)``.

    Either returns images [B, C, H, W] of any size, float in [-1, 1] or uint8.
    """

    def __init__(self, path_or_entry: str | Path | Callable, resolution: int, label: int = 0,
                 num_classes: int = 1, channels: int = 3, z_dim: int | Sequence[int] | str | None = None):
        _check_label(label, num_classes)
        self.label, self.num_classes = label, num_classes
        self.resolution, self.channels = _check_resolution(resolution), channels
        self.module = self.function = None
        if callable(path_or_entry):
            self.spec, self.function = getattr(path_or_entry, "__name__", repr(path_or_entry)), path_or_entry
            return
        self.spec = str(path_or_entry)
        if ENTRY_POINT.fullmatch(self.spec) and not Path(self.spec).exists():
            self.function = _load_entry_point(self.spec)
            return
        self.module = _load_torchscript(Path(self.spec).expanduser())
        z_dim = z_dim if z_dim is not None else getattr(self.module, "z_dim", None)
        if z_dim is None:
            raise CocktailError(f"{self.spec}: the TorchScript sampler has no z_dim attribute; give the size of "
                                f"the latent its forward(z) takes as '{self.spec}?z_dim=100' (in a recipe: "
                                f"{{spec: {self.spec}, z_dim: 100}})")
        self.z_shape = latent_shape(z_dim, self.spec)
        self._device = torch.device("cpu")

    def largest_call(self, batch_size: int) -> None:
        return None  # whatever size the sampler makes before our resize

    def to(self, device) -> ForeignSource:
        if self.module is not None:
            self._device = _canonical(device)
            self.module.to(self._device)
        return self

    @torch.no_grad()
    def sample(self, batch_size, device, generator=None):
        device = _canonical(device)
        if self.module is not None:
            if self._device != device:
                self.to(device)
            z = torch.randn([batch_size, *self.z_shape], generator=generator, device=_draw_device(generator))
            with _network_rng(generator, device):
                images = self.module(z.to(device))
        else:
            with _network_rng(generator, device):
                images = self.function(batch_size, generator, device)
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[0] != batch_size:
            got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise CocktailError(f"{self.spec}: returned {got}; expected images [{batch_size}, C, H, W]")
        images = resize_images(images.to(device), self.resolution, self.channels)
        return images, _labels(self.label, batch_size, device)


class ImageFolderSource(Source):
    """Images under a folder (PNG/JPEG/WebP, recursive), for users who do have data.

    Decoded once and kept in memory as uint8 at our resolution (so no disk reads per step). Labels are
    ``label`` for every image, or with ``labels_from_subfolders`` one class per immediate subfolder, sorted
    by name (``class_names``). Batches are drawn uniformly with replacement.
    """

    def __init__(self, folder: str | Path, resolution: int, label: int = 0, num_classes: int = 1,
                 labels_from_subfolders: bool = False, channels: int = 3):
        folder = Path(folder).expanduser()
        if not folder.is_dir():
            raise CocktailError(f"{folder}: no such image folder")
        self.resolution, self.channels = _check_resolution(resolution), channels
        if labels_from_subfolders:
            self.class_names = sorted(p.name for p in folder.iterdir()
                                      if p.is_dir() and not p.name.startswith("."))
            if not self.class_names:
                raise CocktailError(f"{folder}: no class subfolders (labels come from subfolder names)")
            loose = image_files(folder, recursive=False)
            if loose:
                raise CocktailError(f"{loose[0]}: image outside a class subfolder "
                                    "(labels come from subfolders)")
            groups = [(index, image_files(folder / name)) for index, name in enumerate(self.class_names)]
            for index, files in groups:
                if not files:
                    raise CocktailError(f"{folder / self.class_names[index]}: no images (PNG/JPEG/WebP)")
            self.num_classes = max(num_classes, len(self.class_names))
        else:
            _check_label(label, num_classes)
            self.class_names, self.num_classes = None, num_classes
            groups = [(label, image_files(folder))]
            if not groups[0][1]:
                raise CocktailError(f"{folder}: no images (PNG/JPEG/WebP) found")
        files = [path for _, paths in groups for path in paths]
        self.labels = torch.tensor([index for index, paths in groups for _ in paths], dtype=torch.int64)
        self.images = torch.empty([len(files), channels, resolution, resolution], dtype=torch.uint8)
        pool = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1))
        try:
            for i, image in enumerate(pool.map(self._decode, files)):
                self.images[i] = image
        finally:
            pool.shutdown(cancel_futures=True)  # a bad file stops the decoding of the rest

    def __len__(self) -> int:
        return len(self.images)

    def _decode(self, path: Path) -> torch.Tensor:
        pixels = read_image(path, draft_size=self.resolution)
        return to_uint8(resize_images(pixels[None], self.resolution, self.channels))[0]

    def sample(self, batch_size, device, generator=None):
        index = torch.randint(len(self.images), [batch_size], generator=generator,
                              device=_draw_device(generator)).cpu()
        images = self.images[index].to(device).float() / 127.5 - 1
        return images, self.labels[index].to(device)


class MixtureSource(Source):
    """Several sources in each batch, each keeping its own labels.

    ``weights`` (one per source, e.g. class percentages; equal by default) set the expected share of each
    source; every batch draws its per-source counts from a multinomial, then shuffles the batch.
    """

    def __init__(self, sources: Sequence[Source], weights: Sequence[float] | None = None):
        self.sources = list(sources)
        if not self.sources:
            raise CocktailError("a mixture needs at least one source")
        weights = [1.0] * len(self.sources) if weights is None else list(weights)
        if len(weights) != len(self.sources):
            raise CocktailError(f"{len(weights)} mixture weights given for {len(self.sources)} sources")
        probabilities = torch.tensor(weights, dtype=torch.float64)
        if not torch.isfinite(probabilities).all() or (probabilities < 0).any() or probabilities.sum() <= 0:
            raise CocktailError(f"mixture weights must be non-negative with a positive sum, got {weights}")
        self.probabilities = probabilities / probabilities.sum()
        shapes = {(s.resolution, s.channels) for s in self.sources}
        if len(shapes) > 1:
            raise CocktailError(f"mixture sources disagree on (resolution, channels): {sorted(shapes)}")
        self.resolution, self.channels = shapes.pop()
        self.num_classes = max(s.num_classes for s in self.sources)

    def largest_call(self, batch_size: int) -> int | None:
        calls = [source.largest_call(math.ceil(batch_size * float(p)))
                 for source, p in zip(self.sources, self.probabilities, strict=True)]
        return None if None in calls else max(calls)

    def to(self, device) -> MixtureSource:
        for source in self.sources:
            source.to(device)
        return self

    def sample(self, batch_size, device, generator=None):
        if batch_size < 1:
            raise CocktailError(f"a mixture samples batches of at least 1 image, not {batch_size}")
        draw_device = _draw_device(generator)
        picks = torch.multinomial(self.probabilities.to(draw_device), batch_size, replacement=True,
                                  generator=generator)
        counts = torch.bincount(picks, minlength=len(self.sources)).tolist()
        parts = [source.sample(count, device, generator)
                 for source, count in zip(self.sources, counts, strict=True) if count]
        order = torch.randperm(batch_size, generator=generator, device=draw_device).to(device)
        images, labels = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        return images[order], labels[order]


def load_source(spec: str | Path | Spec, resolution: int, label: int = 0, num_classes: int = 1, device="cpu",
                truncation: float = 1.0) -> Source:
    """A source from a spec (see ``specs``), on ``device``.

    * a model folder, ``example:<name>`` or Hub id ``org/name[@revision]`` (a multi-class model needs
      ``#<class>`` to pick the class it draws);
    * a ``.pt`` / ``.ts`` TorchScript file, with options after ``?`` (``faces.ts?z_dim=100``, see
      ``specs.SOURCE_OPTIONS``), or a ``module:function`` entry point (see ``ForeignSource``);
    * a folder of images (every image labelled ``label``).
    """
    spec = parse(spec)
    if spec.kind in (Kind.PKL_FILE, Kind.TORCHSCRIPT) and not spec.path.is_file():
        raise CocktailError(f"{spec.base}: no such file or folder")
    if spec.kind in (Kind.PKL_FILE, Kind.FILE):
        hint = "; convert it first with scripts/convert.py" if spec.kind is Kind.PKL_FILE else ""
        raise CocktailError(f"{spec.path}: not a source (expected a model folder, a .pt/.ts TorchScript file, "
                            f"a module:function entry point or an image folder){hint}")
    opened = open_spec(spec, load_discriminator=False)
    if opened.model is not None:
        source = ModelSource(opened.model.generator, label=label, num_classes=num_classes, truncation=truncation,
                             resolution=resolution, class_index=picked_class(opened.model, spec))
    elif spec.kind is Kind.IMAGE_FOLDER:
        source = ImageFolderSource(opened.folder, resolution, label=label, num_classes=num_classes)
    elif spec.kind is Kind.ENTRY_POINT:
        source = ForeignSource(spec.target, resolution, label=label, num_classes=num_classes)
    else:
        source = ForeignSource(spec.path, resolution, label=label, num_classes=num_classes, **spec.options)
    return source.to(device)


def picked_class(model: UnionModel, spec: Spec) -> int:
    """The class a ``spec#<class>`` source draws; a multi-class model must be given one."""
    if spec.class_pick is None and model.num_classes > 1:
        raise CocktailError(f"{spec.base} has {model.num_classes} classes ({', '.join(model.class_names)}); "
                            f"pick one with '{spec.base}#<class>'")
    return model.class_index(spec.class_pick) if spec.class_pick is not None else 0


def _load_torchscript(path: Path) -> torch.jit.ScriptModule:
    """TorchScript is a serialized program run by torch's interpreter, not pickled Python."""
    if not path.is_file():
        raise CocktailError(f"{path}: no such TorchScript file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, ValueError) as err:
        reason = str(err).strip().split(". ")[0].splitlines()[0]
        raise CocktailError(f"{path}: not a TorchScript file ({reason})") from None
    return module.eval()


def _load_entry_point(spec: str) -> Callable:
    """``module:function`` → the function: imports code the user named, never code from a download."""
    module_name, _, function_name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise CocktailError(f"{spec}: cannot import module {module_name!r} ({err})") from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise CocktailError(f"{spec}: module {module_name!r} has no function {function_name!r}")
    return function


@contextlib.contextmanager
def _network_rng(generator: torch.Generator | None, device: torch.device):
    """Seed ``device``'s global RNG (networks draw noise from it) from ``generator``; restore it after."""
    if generator is None:
        yield
        return
    seed = int(torch.randint(2**62, [], generator=generator, device=generator.device))
    if device.type == "cpu":
        with torch.random.fork_rng(devices=[], device_type="cpu"):
            torch.random.default_generator.manual_seed(seed)
            yield
    else:
        backend = torch.get_device_module(device.type)
        with torch.random.fork_rng(devices=[device.index], device_type=device.type):
            with backend.device(device.index):
                backend.manual_seed(seed)
            yield


def _canonical(device) -> torch.device:
    """``"cuda"`` → ``cuda:<current>``, so it compares equal to where tensors actually live."""
    return torch.empty(0, device=device).device


def _draw_device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


def _labels(label: int, batch_size: int, device) -> torch.Tensor:
    return torch.full([batch_size], label, dtype=torch.int64, device=device)


def _check_label(label: int, num_classes: int) -> None:
    if not 0 <= label < num_classes:
        raise CocktailError(f"label {label} is out of range for {num_classes} class(es)")


def _check_resolution(resolution) -> int:
    if not isinstance(resolution, int) or resolution < 1:
        raise CocktailError(f"resolution must be a positive integer, got {resolution!r}")
    return resolution
