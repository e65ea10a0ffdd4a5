"""Bring your own image: project a real image into a union, then draw it as every other class.

Written from the equations of the StyleGAN2 paper's projector (Karras et al., 2020, Sec. 5), not from any
implementation of it. For a target image x and class a, Adam optimises a latent (w, shared by every layer;
or W+, one w per layer; or z, through the mapping with class a's input) together with the per-layer noise
maps n_i, minimising

    D(G(w, n), x) + α · Σ_i Σ_levels [ (mean n·n shifted by one column)² + (mean n·n shifted by one row)² ]

where the second term is the multi-scale autocorrelation penalty of each noise map (its levels are the map
2×2-average-pooled, times 2 to keep unit variance, down to 8×8; edges wrap), which stops the noise from
drawing the image by itself. After every step each noise map is renormalised to zero mean and unit
variance. w starts at class a's mean w, estimated from many z; Gaussian noise of strength
σ_w · 0.05 · max(0, 1 − t/0.75)² is added to the latent (t = step/steps, σ_w the RMS distance of w to
that mean), and the learning rate ramps up linearly over the first 5 % of the steps and down along a
half cosine over the last 25 %.

D is a perceptual distance built from networks already on the machine, so it works offline: the early
and middle layers of the Inception network that the metrics use, or the union's own discriminator, in
LPIPS's form without its learned weights (features unit-normalised along channels, squared differences
averaged over positions, summed over layers), plus a weighted pixel MSE; or the pixel MSE alone.
BENCHMARKS.md compares them.

Carrying the projection to class b: the synthesis network has no class input (the class only enters the
mapping), so the same w draws the same image in every class. A w or W+ projection moves by the difference
of the class means, w − w̄_a + w̄_b; a z projection is mapped again with class b's input.

    projection = project(union, "photo.png", "sneaker", steps=300)      # → Projection (w, noise, history)
    images = render_classes(union, projection)                          # {class name: PIL image}
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError
from torch.func import functional_call
from tqdm.auto import tqdm

from . import editing
from .errors import CocktailError
from .images import resize_images, to_pil, to_uint8
from .union import UnionModel

SPACES = ("w", "w+", "z")
DISTANCES = ("inception", "discriminator", "mse")
# Uploads larger than this are refused before they are decoded (a 5000 × 5000 photo is 25 megapixels).
MAX_IMAGE_BYTES = 20 * 2**20
MAX_IMAGE_PIXELS = 25_000_000
WIDE_MODES = ("I;16", "I;16L", "I;16B", "I")  # 16-bit grey (PNG, TIFF), read as 32-bit integers by some readers


# -- the image -------------------------------------------------------------------------------------


def read_image(source: str | Path | Image.Image, resolution: int, channels: int = 3,
               background: Sequence[float] = (-1.0, -1.0, -1.0)) -> torch.Tensor:
    """An image file or PIL image → float [channels, resolution, resolution] in [-1, 1], as the union draws.

    Whatever a visitor uploads is either brought to that form or refused with a reason: EXIF rotation is
    applied; 16-bit grey is scaled to 8 bits (not clipped, which would turn it white); transparency is
    composited onto ``background`` (in [-1, 1]: the colour the union draws behind its objects); grey and
    colour become the model's channels; non-square images are centre-cropped and resized as every real
    image in this project is. Files over ``MAX_IMAGE_BYTES`` or ``MAX_IMAGE_PIXELS`` are refused unread.
    """
    if isinstance(source, Image.Image):
        return _to_tensor(source, resolution, channels, background)
    path = Path(source)
    if not path.is_file():
        raise CocktailError(f"{path.name}: no such file")
    if path.stat().st_size > MAX_IMAGE_BYTES:
        raise CocktailError(f"{path.name}: the file is {path.stat().st_size / 2**20:.0f} MB; images up to "
                            f"{MAX_IMAGE_BYTES // 2**20} MB are accepted")
    try:
        with Image.open(path) as image:
            return _to_tensor(image, resolution, channels, background)
    except UnidentifiedImageError:
        raise CocktailError(f"{path.name}: not an image this program can read (PNG, JPEG, WebP, GIF, BMP, TIFF)"
                            ) from None
    except (OSError, SyntaxError, Image.DecompressionBombError) as err:
        raise CocktailError(f"{path.name}: the image cannot be decoded ({err})") from None


def _to_tensor(image: Image.Image, resolution: int, channels: int, background: Sequence[float]) -> torch.Tensor:
    width, height = image.size
    if width * height > MAX_IMAGE_PIXELS:
        raise CocktailError(f"the image is {width} × {height} pixels; images up to "
                            f"{MAX_IMAGE_PIXELS / 1e6:.0f} megapixels are accepted")
    if width < 1 or height < 1:
        raise CocktailError("the image is empty")
    image = ImageOps.exif_transpose(image)
    if image.mode in WIDE_MODES:
        wide = np.asarray(image, dtype=np.float64)
        image = Image.fromarray(np.clip(np.round(wide / 257), 0, 255).astype(np.uint8), "L")
    elif image.mode == "F":
        raise CocktailError("the image holds floating-point pixels; save it as an 8- or 16-bit PNG or a JPEG")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        fill = tuple(int(round((float(v) + 1) * 127.5)) for v in background)
        image = Image.new("RGB", rgba.size, fill)
        image.paste(rgba, mask=rgba.getchannel("A"))
    pixels = torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1)
    return resize_images(pixels[None], resolution, channels)[0]


# -- per-class statistics of W -------------------------------------------------------------------------


@dataclass
class ClassLatents:
    """Each class's mean w [C, w_dim] and the RMS distance σ_w [C] of its w to that mean."""

    means: torch.Tensor
    spreads: torch.Tensor


@torch.no_grad()
def class_latents(union: UnionModel, num_samples: int = 10_000, seed: int = 0,
                  batch_size: int = 2_000) -> ClassLatents:
    """The w statistics of every class from ``num_samples`` z (the same z for every class)."""
    generator = union.generator
    z = torch.randn([num_samples, generator.z_dim], generator=torch.Generator().manual_seed(seed))
    means, spreads = [], []
    for index in range(union.num_classes):
        ws = torch.cat([generator.mapping(chunk.to(union.device), union.labels_to_c([index] * len(chunk)))[:, 0]
                        for chunk in z.split(batch_size)]).float().cpu()
        mean = ws.mean(0)
        means.append(mean)
        spreads.append((ws - mean).square().sum(1).mean().sqrt())
    return ClassLatents(torch.stack(means), torch.stack(spreads))


# -- perceptual distances -------------------------------------------------------------------------------


class Distance:
    """A distance between images and fixed targets, one number per image: the sum over the network's layers
    of LPIPS's per-layer term without its learned weights, plus ``pixel_weight`` × the pixel MSE.

    ``reference(targets)`` computes the targets' features once; ``distance(images, reference)`` → [B].
    """

    name: str

    def __init__(self, pixel_weight: float):
        self.pixel_weight = float(pixel_weight)

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The layers' activations for images in [-1, 1] (none for a pixel distance)."""
        return []

    @torch.no_grad()
    def reference(self, targets: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        return [f.detach() for f in self.features(targets)], targets.detach()

    def __call__(self, images: torch.Tensor, reference: tuple[list[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        target_features, targets = reference
        total = self.pixel_weight * (images - targets).square().mean(dim=[1, 2, 3])
        for ours, theirs in zip(self.features(images), target_features, strict=True):
            ours = ours / (ours.square().sum(1, keepdim=True) + 1e-10).sqrt()
            theirs = theirs / (theirs.square().sum(1, keepdim=True) + 1e-10).sqrt()
            total = total + (ours - theirs).square().sum(1).mean(dim=[1, 2])
        return total


class PixelDistance(Distance):
    """Mean squared error in [-1, 1] units: the baseline a perceptual distance has to beat."""

    name = "mse"

    def __init__(self):
        super().__init__(pixel_weight=1.0)


class InceptionDistance(Distance):
    """Early and middle layers of the metrics' Inception network (``metrics.inception.load_inception``), on the image
    upsampled to ``size`` px, plus ``pixel_weight`` × MSE, which keeps brightness and colour that the
    normalised features leave free (BENCHMARKS.md: 64 px and weight 10 measured best per CPU second)."""

    name = "inception"
    TAPS = ("conv_2", "conv_4", "mixed_2", "mixed_7")  # the end of each resolution Inception works at

    def __init__(self, device=None, size: int = 64, pixel_weight: float = 10.0):
        from .metrics.inception import load_inception  # Inception ships with the evaluation extras, needed only here

        super().__init__(pixel_weight)
        layers = load_inception(device).net.layers
        for parameter in layers.parameters():
            parameter.requires_grad_(False)
        children = list(layers.named_children())
        last = max(i for i, (name, _) in enumerate(children) if name in self.TAPS)
        self.stages = children[: last + 1]
        self.size = size

    def features(self, images):
        x = images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images
        x = (x * 127.5 - 0.5) / 128  # [-1, 1] → the network's (v − 128) / 128 on 0…255 values
        x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False,
                          antialias=x.shape[-1] > self.size)
        taps = []
        for name, stage in self.stages:
            x = stage(x)
            if name in self.TAPS:
                taps.append(x)
        return taps


class DiscriminatorDistance(Distance):
    """The outputs of the union's own discriminator blocks (class-independent: the class enters only in its
    last layer), plus ``pixel_weight`` × MSE: trained on exactly these domains and resolution, and shipped
    in every model folder."""

    name = "discriminator"

    def __init__(self, union: UnionModel, pixel_weight: float = 10.0):
        if union.discriminator is None:
            raise CocktailError("the discriminator distance needs the model's discriminator (load the model with "
                                "load_discriminator=True); or use the inception or mse distance")
        super().__init__(pixel_weight)
        self.discriminator = copy.deepcopy(union.discriminator).requires_grad_(False).float()

    def features(self, images):
        x, taps = None, []
        for block in self.discriminator.blocks():
            x = block(x, images)
            taps.append(x)
        return taps


def make_distance(name: str | Distance, union: UnionModel) -> Distance:
    """A distance by name (see ``DISTANCES``), on the union's device; a ``Distance`` passes through."""
    if isinstance(name, Distance):
        return name
    if name == "inception":
        return InceptionDistance(union.device)
    if name == "discriminator":
        return DiscriminatorDistance(union)
    if name == "mse":
        return PixelDistance()
    raise CocktailError(f"unknown distance {name!r}; choose one of: {', '.join(DISTANCES)}")


# -- drawing with given noise maps -------------------------------------------------------------------


class FrozenGenerator:
    """A private, gradient-free copy of the union's generator that draws with given noise maps.

    A copy, because the noise maps go in as the synthesis layers' constant-noise buffers
    (``functional_call``), and the demo's other tabs draw with the shared network at the same time.
    A noise map [B, 1, H, W] gives every image its own noise; [H, W] shares one.
    """

    def __init__(self, union: UnionModel):
        self.network = copy.deepcopy(union.generator).requires_grad_(False).float()
        self.noise_names = [name for name, _ in self.network.synthesis.named_buffers()
                            if name.endswith("noise_const")]
        self.device = union.device

    def constant_noise(self) -> list[torch.Tensor]:
        buffers = dict(self.network.synthesis.named_buffers())
        return [buffers[name] for name in self.noise_names]

    def mapping(self, z: torch.Tensor, class_index: int) -> torch.Tensor:
        c = None
        if self.network.c_dim:
            c = F.one_hot(torch.full([len(z)], class_index, dtype=torch.long), self.network.c_dim).float()
            c = c.to(z.device)
        return self.network.mapping(z, c)

    def synthesis(self, ws: torch.Tensor, noise: Sequence[torch.Tensor]) -> torch.Tensor:
        buffers = dict(zip(self.noise_names, noise, strict=True))
        return functional_call(self.network.synthesis, buffers, (ws,), {"noise_mode": "const"})


def noise_penalty(noise: Sequence[torch.Tensor]) -> torch.Tensor:
    """The multi-scale autocorrelation penalty per image: [B] for noise maps [B, 1, H, W] (edges wrap)."""
    total = 0
    for n in noise:
        while True:
            total = total + (n * n.roll(1, dims=3)).mean(dim=[1, 2, 3]).square()
            total = total + (n * n.roll(1, dims=2)).mean(dim=[1, 2, 3]).square()
            if n.shape[-1] <= 8:
                break
            n = F.avg_pool2d(n, 2) * 2
    return total


def ramped_learning_rate(t: float, base: float, ramp_up: float = 0.05, ramp_down: float = 0.25) -> float:
    """Linear ramp up over the first ``ramp_up`` of the run, half-cosine ramp down over the last ``ramp_down``."""
    up = min(1.0, t / ramp_up) if ramp_up > 0 else 1.0
    down = 0.5 - 0.5 * math.cos(math.pi * min(1.0, (1 - t) / ramp_down)) if ramp_down > 0 else 1.0
    return base * up * down


# -- projecting -----------------------------------------------------------------------------------------


@dataclass
class Step:
    """One optimisation step: its index (from 1), learning rate, and per image the distance and noise penalty."""

    step: int
    learning_rate: float
    distance: list[float]
    noise_penalty: list[float]


@dataclass
class Projection:
    """A projected image: the latent that draws it in its class, the noise maps, and how the run went.

    ``ws`` [num_ws, w_dim] is what the synthesis network takes (with ``noise``, one [H, W] map per layer);
    ``z`` is the optimised z for a z projection (None otherwise). ``history`` holds this image's distance
    per step; ``distance`` is the final one, without latent noise.
    """

    class_name: str
    space: str
    distance_name: str
    ws: torch.Tensor
    z: torch.Tensor | None
    noise: list[torch.Tensor]
    target: torch.Tensor
    reconstruction: torch.Tensor
    distance: float
    history: list[dict] = field(default_factory=list)

    @property
    def image(self) -> Image.Image:
        return to_pil(self.reconstruction[None])[0]

    @property
    def target_image(self) -> Image.Image:
        return to_pil(self.target[None])[0]

    @property
    def psnr(self) -> float:
        """Peak signal-to-noise ratio of the reconstruction, in dB, on 8-bit pixels as they are saved."""
        return psnr(self.reconstruction, self.target)

    def save(self, path: str | Path) -> Path:
        """The latent, noise and settings as ``.npz`` (numpy only, so any tool reads it back)."""
        path = Path(path)
        arrays = {"ws": self.ws.numpy(), "class_name": np.array(self.class_name), "space": np.array(self.space),
                  "distance_name": np.array(self.distance_name), "distance": np.array(self.distance),
                  **{f"noise{i}": n.numpy() for i, n in enumerate(self.noise)}}
        if self.z is not None:
            arrays["z"] = self.z.numpy()
        np.savez(path, **arrays)
        return path


def psnr(images: torch.Tensor, targets: torch.Tensor) -> float:
    """PSNR in dB of images against targets in [-1, 1], after rounding both to 8 bits (averaged over images
    when given a batch)."""
    a, b = to_uint8(images).float(), to_uint8(targets).float()
    mse = (a - b).square().flatten(1 if a.ndim == 4 else 0).mean(-1).clamp_min(1e-10)
    return float((10 * torch.log10(255**2 / mse)).mean())


class Projector:
    """Projects a batch of images of one class; iterate ``run()`` for each step, then read ``results()``.

    Every image gets its own latent and noise maps and the loss is a sum over images, so a batch is the
    same as projecting one image at a time (Adam works element-wise), only faster.
    """

    def __init__(self, union: UnionModel, images: torch.Tensor, class_name: str | int, *, steps: int = 300,
                 space: str = "w", distance: str | Distance = "inception", learning_rate: float = 0.1,
                 noise_weight: float = 1e5, latent_noise: float = 0.05, latent_noise_ramp: float = 0.75,
                 ramp_up: float = 0.05, ramp_down: float = 0.25, latents: ClassLatents | None = None,
                 seed: int = 0):
        if space not in SPACES:
            raise CocktailError(f"unknown latent space {space!r}; choose one of: {', '.join(SPACES)}")
        if int(steps) < 1:
            raise CocktailError(f"steps must be at least 1, got {steps}")
        generator = union.generator
        expected = (generator.img_channels, generator.img_resolution, generator.img_resolution)
        if images.ndim != 4 or tuple(images.shape[1:]) != expected:
            raise CocktailError(f"images must be [N, {', '.join(map(str, expected))}] in [-1, 1] "
                                f"(read_image makes them), got {tuple(images.shape)}")
        self.union, self.space, self.steps = union, space, int(steps)
        self.class_index = union.class_index(class_name)
        self.class_name = union.class_names[self.class_index]
        self.settings = dict(learning_rate=learning_rate, noise_weight=noise_weight, latent_noise=latent_noise,
                             latent_noise_ramp=latent_noise_ramp, ramp_up=ramp_up, ramp_down=ramp_down)
        self.distance = make_distance(distance, union)
        self.frozen = FrozenGenerator(union)
        self.latents = latents or class_latents(union)
        self.targets = images.to(union.device, torch.float32)
        self.reference = self.distance.reference(self.targets)
        self.rng = torch.Generator().manual_seed(seed)
        count, device = len(images), union.device
        mean = self.latents.means[self.class_index].to(device)
        if space == "z":
            self.latent = self._typical_z(count, mean)
            self.spread = math.sqrt(generator.z_dim)  # z ~ N(0, I): its RMS distance to its mean
        else:
            layers = generator.num_ws if space == "w+" else 1
            self.latent = mean.repeat(count, layers, 1)
            self.spread = float(self.latents.spreads[self.class_index])
        self.latent.requires_grad_(True)
        self.noise = [torch.randn([count, 1, *n.shape], generator=self.rng).to(device).requires_grad_(True)
                      for n in self.frozen.constant_noise()]
        self.optimizer = torch.optim.Adam([self.latent, *self.noise], lr=learning_rate, betas=(0.9, 0.999))
        self.history: list[Step] = []
        self.images: torch.Tensor | None = None

    def _typical_z(self, count: int, mean: torch.Tensor) -> torch.Tensor:
        """z has no mean to start from (the mapping normalises it): the one of 256 seeded z whose w is
        nearest the class's mean w, for every image."""
        z = torch.randn([256, self.union.generator.z_dim], generator=self.rng).to(mean.device)
        with torch.no_grad():
            ws = self.frozen.mapping(z, self.class_index)[:, 0]
        best = (ws - mean).square().sum(1).argmin()
        return z[best].repeat(count, 1).clone()

    def _ws(self, latent: torch.Tensor) -> torch.Tensor:
        if self.space == "z":
            return self.frozen.mapping(latent, self.class_index)
        if self.space == "w":
            return latent.expand(-1, self.union.generator.num_ws, -1)
        return latent

    def run(self) -> Iterator[Step]:
        """Optimise, yielding after every step; ``self.images`` holds the current reconstructions."""
        s = self.settings
        for step in range(self.steps):
            t = step / self.steps
            lr = ramped_learning_rate(t, s["learning_rate"], s["ramp_up"], s["ramp_down"])
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            strength = self.spread * s["latent_noise"] * max(0.0, 1 - t / s["latent_noise_ramp"]) ** 2
            jitter = torch.randn(self.latent.shape, generator=self.rng).to(self.latent.device) * strength
            images = self.frozen.synthesis(self._ws(self.latent + jitter), self.noise)
            distance = self.distance(images, self.reference)
            penalty = noise_penalty(self.noise)
            loss = (distance + s["noise_weight"] * penalty).sum()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            with torch.no_grad():
                for n in self.noise:
                    n.sub_(n.mean(dim=[2, 3], keepdim=True)).div_(n.std(dim=[2, 3], keepdim=True) + 1e-8)
            self.images = images.detach()
            record = Step(step + 1, lr, distance.detach().cpu().tolist(), penalty.detach().cpu().tolist())
            self.history.append(record)
            yield record

    @torch.no_grad()
    def results(self) -> list[Projection]:
        """The final projections: the last latent and noise, drawn without latent noise."""
        ws = self._ws(self.latent.detach())
        images = self.frozen.synthesis(ws, self.noise)
        distances = self.distance(images, self.reference).cpu().tolist()
        results = []
        for i in range(len(images)):
            history = [{"step": h.step, "learning_rate": h.learning_rate, "distance": h.distance[i],
                        "noise_penalty": h.noise_penalty[i]} for h in self.history]
            results.append(Projection(
                class_name=self.class_name, space=self.space, distance_name=self.distance.name,
                ws=ws[i].cpu(), z=self.latent[i].detach().cpu() if self.space == "z" else None,
                noise=[n[i, 0].detach().cpu() for n in self.noise], target=self.targets[i].cpu(),
                reconstruction=images[i].cpu(), distance=distances[i], history=history))
        return results


def project_many(union: UnionModel, images: torch.Tensor, class_name: str | int, *,
                 callback: Callable[[Step, torch.Tensor], None] | None = None, progress: bool = False,
                 **settings) -> list[Projection]:
    """Project a batch [N, C, R, R] of images of one class (see ``Projector`` for the settings)."""
    projector = Projector(union, images, class_name, **settings)
    with tqdm(total=projector.steps, desc=f"projecting into {projector.class_name}", unit="step",
              disable=not progress, leave=False) as bar:
        for step in projector.run():
            bar.update(1)
            bar.set_postfix(distance=f"{np.mean(step.distance):.4f}")
            if callback is not None:
                callback(step, projector.images)
    return projector.results()


def project(union: UnionModel, image: str | Path | Image.Image | torch.Tensor, class_name: str | int, *,
            steps: int = 300, space: str = "w", distance: str | Distance = "inception",
            callback: Callable[[Step, torch.Tensor], None] | None = None, progress: bool = False,
            **settings) -> Projection:
    """Project one image (a file, a PIL image, or a tensor [C, R, R] in [-1, 1]) into ``class_name``.

    ``callback(step, images)`` is called after every step with the current reconstruction [1, C, R, R];
    ``progress`` shows a progress bar.
    """
    if not isinstance(image, torch.Tensor):
        image = read_image(image, union.generator.img_resolution, union.generator.img_channels,
                           background_colour(union, class_name))
    return project_many(union, image[None], class_name, steps=steps, space=space, distance=distance,
                        callback=callback, progress=progress, **settings)[0]


@torch.no_grad()
def background_colour(union: UnionModel, class_name: str | int, latents: ClassLatents | None = None
                      ) -> list[float]:
    """The colour the union draws behind objects of a class (the border of its mean-w image), in [-1, 1]:
    what a transparent upload is composited onto."""
    latents = latents or class_latents(union, num_samples=1000)
    mean = latents.means[union.class_index(class_name)].to(union.device)
    image = union.generator.synthesis(mean.repeat(1, union.generator.num_ws, 1), noise_mode="const")[0]
    border = torch.cat([image[:, 0], image[:, -1], image[:, :, 0], image[:, :, -1]], dim=1)
    colour = border.mean(1).clamp(-1, 1).tolist()
    return colour * 3 if len(colour) == 1 else colour


# -- the projection in other classes, and edited ------------------------------------------------------


@torch.no_grad()
def carried_ws(union: UnionModel, projection: Projection, class_name: str | int,
               latents: ClassLatents | None = None) -> torch.Tensor:
    """The latent [num_ws, w_dim] that draws ``projection`` as ``class_name``.

    A z projection goes through the mapping again with the other class's input. A w or W+ projection moves
    by the difference of the class means (``latents``, from ``class_latents``): the synthesis network has
    no class input, so an unmoved w would draw the same image in every class.
    """
    target = union.class_index(class_name)
    source = union.class_index(projection.class_name)
    if target == source:
        return projection.ws.clone()
    if projection.z is not None:
        c = union.labels_to_c([target])
        return union.generator.mapping(projection.z[None].to(union.device), c)[0].float().cpu()
    latents = latents or class_latents(union)
    return projection.ws + (latents.means[target] - latents.means[source])


@torch.no_grad()
def draw(union: UnionModel, projection: Projection, ws: torch.Tensor) -> torch.Tensor:
    """Images [N, C, R, R] for latents [N, num_ws, w_dim], with the projection's noise maps."""
    frozen = FrozenGenerator(union)
    noise = [n.to(union.device) for n in projection.noise]
    return frozen.synthesis(ws.to(union.device), noise).float().cpu()


def render_classes(union: UnionModel, projection: Projection, latents: ClassLatents | None = None
                   ) -> dict[str, Image.Image]:
    """The projection drawn as every class of the union (its own class: the reconstruction)."""
    latents = latents or class_latents(union)
    ws = torch.stack([carried_ws(union, projection, name, latents) for name in union.class_names])
    return dict(zip(union.class_names, to_pil(draw(union, projection, ws)), strict=True))


def along_direction(union: UnionModel, projection: Projection, class_name: str | int,
                    directions: editing.Directions, index: int, strengths: Sequence[float],
                    latents: ClassLatents | None = None) -> list[Image.Image]:
    """The projection as ``class_name``, moved along one of the demo's PCA directions by each strength (σ)."""
    ws = carried_ws(union, projection, class_name, latents)
    moved = torch.stack([editing.shift_ws(ws, directions, index, float(s)) for s in strengths])
    return to_pil(draw(union, projection, moved))
