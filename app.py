"""GAN Cocktail demo: one union GAN, many domains, one shared latent space.

    python app.py                          # the shipped example union on http://127.0.0.1:7860, offline
    python app.py --model org/name@rev     # a union model from the Hub (or a local model folder)

``DemoHandlers`` does what each tab asks, with plain values in and out (no server needed, so tests call it
directly); one small builder per tab lays out its widgets and wires its events to those handlers; ``build_demo``
composes the tabs. Sampling, editing and projection themselves live in ``cocktail.union``, ``cocktail.editing``
and ``cocktail.projection``.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import json
import math
import os
import random
import re
import shutil
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

import gradio as gr
import torch
from PIL import Image

from cocktail import editing, projection
from cocktail.assets import DEFAULT_UNION, real_examples
from cocktail.errors import CocktailError, run_script
from cocktail.folder import SAMPLES_FILE
from cocktail.images import to_pil
from cocktail.provenance import Provenance
from cocktail.specs import parse
from cocktail.union import UnionModel

MAX_SEED = 2**31 - 1
MAX_IMAGES = 16
MAX_STEPS = 16
MIN_PSI, MAX_PSI = 0.0, 1.5
MAX_STRENGTH = 10.0
NUM_DIRECTIONS = 10
# Your image: optimisation steps allowed and offered, how many times a run shows its progress, and the strengths
# (in σ) of the strip along a direction.
MAX_PROJECTION_STEPS = 1000
PROJECTION_STEPS = 200
PROJECTION_UPDATES = 20
DIRECTION_STRENGTHS = (-2.0, -1.0, 0.0, 1.0, 2.0)
# A crowd waits in line up to this many requests (a few KB each); beyond that, visitors are told the demo
# is busy and to try again, instead of piling onto the model.
QUEUE_SIZE = 256
# Compare: source models loaded at most, the time allowed to load them (in the background, once), and how
# long one request waits for that before answering "still loading".
MAX_COMPARE_SOURCES = 8
COMPARE_LOAD_S = 120
COMPARE_WAIT_S = 20
# A deployed Space names its model here (written by scripts/deploy_space.py); `--model` overrides it.
DEFAULT_MODEL_FILE = Path(__file__).with_name("default_model.txt")

# ZeroGPU Spaces attach a GPU only while a `spaces.GPU` function runs. Each tab wraps its bound handler, so
# what crosses into the GPU worker is the widgets' plain values, never the handlers with their lock and pool.
try:
    import spaces

    gpu = spaces.GPU
except (ImportError, AttributeError):  # not installed, or only this repo's `spaces/` folder
    def gpu(fn):
        return fn


def _user_errors(fn):
    """Turn expected errors into `gr.Error`, which the browser and API clients show as a readable message
    (for a streaming handler too: its errors come while it is iterated)."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def streaming(*args):
            try:
                yield from fn(*args)
            except CocktailError as err:
                raise gr.Error(str(err)) from None
        return streaming

    @functools.wraps(fn)
    def wrapper(*args):
        try:
            return fn(*args)
        except CocktailError as err:
            raise gr.Error(str(err)) from None
    return wrapper


def parse_seeds(text: str, max_count: int | None = None) -> list[int]:
    """``"0-7"``, ``"1,5,9"`` or a mix like ``"0-3, 9"`` → seeds, each in ``[0, MAX_SEED]``."""
    seeds: list[int] = []
    for part in str(text).replace(" ", "").split(","):
        if not part:
            continue
        low, sep, high = part.partition("-")
        if not low.isdigit() or (sep and not high.isdigit()):
            raise CocktailError(f"seeds: {part!r} is not a seed or a range like 0-7 (integers >= 0)")
        first, last = int(low), int(high) if sep else int(low)
        if last < first:
            raise CocktailError(f"seeds: range {part!r} goes backwards")
        if last > MAX_SEED:
            raise CocktailError(f"seeds: {last} is larger than the largest seed {MAX_SEED}")
        if max_count is not None and len(seeds) + last - first + 1 > max_count:
            raise CocktailError(f"seeds: {text!r} asks for more than {max_count} images")
        seeds.extend(range(first, last + 1))
    if not seeds:
        raise CocktailError("seeds: give at least one seed, e.g. 0-7 or 1,5,9")
    return seeds


def check_range(name: str, value, low: float, high: float, integer: bool = False):
    """A value from a UI field or an API client (a float, a string, anything at all) → a number in
    [low, high] (an int if ``integer``), or a readable error."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not low <= number <= high or (integer and number != int(number)):
        kind, bounds = (("an integer", f"{int(low)} and {int(high)}") if integer
                        else ("a number", f"{low:g} and {high:g}"))
        raise CocktailError(f"{name} must be {kind} between {bounds}, got {value!r}")
    return int(number) if integer else number


def check_seed(seed) -> int:
    """One seed from a UI number field → an int seed."""
    return check_range("seed", seed, 0, MAX_SEED, integer=True)


def _gallery(images, captions):
    """Gallery items whose PNGs differ per response: gradio caches an image under the hash of its bytes and
    rewrites that file in place, so two visitors asking for the same seeds at once would share one file,
    and one would download it while it is being rewritten (a connection closed mid-response). A unique
    text chunk (which also says what the image is) gives each response its own files."""
    request = uuid.uuid4().hex[:12]
    stamped = []
    for image, caption in zip(images, captions, strict=True):
        image = image.copy()
        image.info = {"Description": f"GAN Cocktail: {caption}", "Request": request}
        stamped.append((image, caption))
    return stamped


def model_summary(model: UnionModel) -> str:
    """Markdown shown when the model folder has no card of its own."""
    g = model.generator
    return (f"**{model.num_classes} classes** ({', '.join(model.class_names)}), "
            f"{g.img_resolution}×{g.img_resolution} px, z/w dim {g.z_dim}/{g.w_dim}, "
            f"{g.num_ws} style layers.")


class DemoHandlers:
    """What the demo does for one union model, callable without a server (so tests call it directly).

    Each public method takes the widgets' plain values and returns what the output widgets show; an expected
    error (a bad seed, an unknown class) comes out as `gr.Error` with a readable message. What every visitor
    shares (the PCA of W, the loaded source models) is computed once, under a lock.
    ``from_hub``: the model is someone else's, so Compare only fetches Hub sources at their recorded commit.
    ``projection_distance``: what Your image minimises (``projection.DISTANCES``); by default the Inception
    distance where the evaluation extras are installed, else pixel MSE.
    """

    def __init__(self, model: UnionModel, from_hub: bool = False, projection_distance: str | None = None):
        self.model = model
        self.from_hub = from_hub
        self.projection_distance = projection_distance
        self.classes = model.class_names
        self.num_ws = model.generator.num_ws
        self.num_directions = min(NUM_DIRECTIONS, model.generator.w_dim)
        # Animations and example images, removed with the handlers.
        self._files = tempfile.TemporaryDirectory(prefix="gan-cocktail-")
        # The shipped real images of this model's classes, copied where gradio serves example files from.
        self.examples = {}
        for name, path in real_examples().items():
            if name in self.classes:
                self.examples[name] = Path(shutil.copy2(path, Path(self._files.name) / path.name))
        self._cache: dict[str, object] = {}
        self._cache_lock = threading.Lock()
        self._background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="load-sources")

    def cached(self, key, compute):
        """Compute once, on first use, shared by every visitor."""
        with self._cache_lock:
            if key not in self._cache:
                self._cache[key] = compute()
            return self._cache[key]

    def _psi(self, value):
        return check_range("truncation ψ", value, MIN_PSI, MAX_PSI)

    def _class(self, name):
        return self.classes[self.model.class_index(name if name is not None else "")]

    def _endpoint(self, class_name, seed):
        return self._class(class_name), check_seed(seed)

    @_user_errors
    def random_seeds(self, count):
        count = check_range("number of images", count, 1, MAX_IMAGES, integer=True)
        start = random.randint(0, MAX_SEED - count + 1)
        return f"{start}-{start + count - 1}" if count > 1 else str(start)

    @_user_errors
    def generate(self, class_name, seeds_text, count, psi):
        name, psi = self._class(class_name), self._psi(psi)
        count = check_range("number of images", count, 1, MAX_IMAGES, integer=True)
        seeds = parse_seeds(seeds_text, MAX_IMAGES)
        if len(seeds) == 1 and count > 1:  # one seed means "start here": count consecutive seeds
            seeds = parse_seeds(f"{seeds[0]}-{seeds[0] + count - 1}", MAX_IMAGES)
        images = self.model.sample(name, seeds, truncation=psi)
        return _gallery(images, [f"{name} · seed {s} · ψ {psi:g}" for s in seeds])

    @_user_errors
    def style_mix(self, class_a, seed_a, class_b, seed_b, crossover, psi):
        a, b, psi = self._endpoint(class_a, seed_a), self._endpoint(class_b, seed_b), self._psi(psi)
        crossover = check_range("crossover layer", crossover, 1, self.num_ws - 1, integer=True)
        images = editing.style_mix(self.model, a, b, crossover, truncation=psi)
        return _gallery(images, [f"coarse: {a[0]} · seed {a[1]}", f"fine: {b[0]} · seed {b[1]}",
                                 f"mix at layer {crossover} · ψ {psi:g}"])

    @_user_errors
    def interpolate(self, class_a, seed_a, class_b, seed_b, steps, psi, fmt):
        """The frames, and the path of their animation (a file these handlers own)."""
        a, b, psi = self._endpoint(class_a, seed_a), self._endpoint(class_b, seed_b), self._psi(psi)
        steps = check_range("steps", steps, 2, MAX_STEPS, integer=True)
        if fmt not in editing.ANIMATION_FORMATS:
            formats = " or ".join(editing.ANIMATION_FORMATS)
            raise CocktailError(f"animation format must be {formats}, got {fmt!r}")
        frames = editing.interpolate(self.model, a, b, steps, truncation=psi)
        # Named by its parameters: a repeated request rewrites the same small file instead of adding one.
        name = f"{self.classes.index(a[0])}-{a[1]}_{self.classes.index(b[0])}-{b[1]}_{steps}_{psi:g}.{fmt}"
        path = Path(self._files.name) / name
        editing.save_animation(frames, path)
        captions = [f"{i / (steps - 1):.2f}" for i in range(steps)]
        return _gallery(frames, captions), str(path)

    @_user_errors
    def directions(self, index, strength, class_name, seeds_text, psi):
        name, psi = self._class(class_name), self._psi(psi)
        index = check_range("direction", index, 0, self.num_directions - 1, integer=True)
        strength = check_range("strength", strength, -MAX_STRENGTH, MAX_STRENGTH)
        seeds = parse_seeds(seeds_text, MAX_IMAGES)
        found = self.cached("directions",
                            lambda: editing.pca_directions(self.model, num_components=self.num_directions))
        images = editing.edit(self.model, found, index, strength, name, seeds, truncation=psi)
        return _gallery(images, [f"{name} · seed {s} · PC{index} {strength:+g}σ" for s in seeds])

    def _load_sources(self):
        return editing.load_sources(self.model, hub_only=self.from_hub, limit=MAX_COMPARE_SOURCES,
                                    deadline=time.monotonic() + COMPARE_LOAD_S)

    @_user_errors
    def compare(self, seed, psi):
        """Union and source images of one seed, and a note on the sources that could not be loaded."""
        seed, psi = check_seed(seed), self._psi(psi)
        loading = self.cached("sources", lambda: self._background.submit(self._load_sources))  # in the background
        try:
            sources = loading.result(timeout=COMPARE_WAIT_S)
        except FutureTimeout:
            raise CocktailError("the source models are still loading; try again in a minute") from None
        if not sources:
            return [], "This model's provenance lists no source models to compare with."
        items = []
        for name, union_image, source_image in editing.compare(self.model, sources, seed, truncation=psi):
            items.append((union_image, f"union · {name} · seed {seed}"))
            if source_image is not None:
                items.append((source_image, f"source {name} · seed {seed}"))
        notes = [f"- {s.note}" for s in sources if s.note]
        note = "Sources not available here, so skipped:\n" + "\n".join(notes) if notes else ""
        return items, note

    def _distance(self) -> projection.Distance:
        """The projection distance, loaded once (the Inception file is 87 MB)."""
        def load():
            if self.projection_distance is not None:
                return projection.make_distance(self.projection_distance, self.model)
            try:
                return projection.make_distance("inception", self.model)
            except CocktailError:  # the evaluation extras are not installed here
                return projection.PixelDistance()
        return self.cached("projection distance", load)

    def _latents(self) -> projection.ClassLatents:
        return self.cached("class latents", lambda: projection.class_latents(self.model))

    @_user_errors
    def project(self, path, class_name, steps, space, direction):
        """Stream ([the image as the model sees it, the projection so far], a status line, [], [], None) while
        projecting, then the projection in every class, along a direction, and the projection itself."""
        if not path:
            raise CocktailError("upload an image, or pick one of the examples")
        name = self._class(class_name)
        steps = check_range("steps", steps, 1, MAX_PROJECTION_STEPS, integer=True)
        if space not in projection.SPACES:
            raise CocktailError(f"latent space must be one of {', '.join(projection.SPACES)}, got {space!r}")
        direction = check_range("direction", direction, 0, self.num_directions - 1, integer=True)
        generator, latents = self.model.generator, self._latents()
        target = projection.read_image(path, generator.img_resolution, generator.img_channels,
                                       projection.background_colour(self.model, name, latents))
        seen = to_image(target)
        distance = self._distance()
        projector = projection.Projector(self.model, target[None], name, steps=steps, space=space,
                                         distance=distance, latents=latents)
        started = time.monotonic()
        every = max(1, math.ceil(steps / PROJECTION_UPDATES))
        yield _gallery([seen], ["your image"]), f"projecting into **{name}** …", [], [], None
        for step in projector.run():
            if step.step % every == 0 and step.step < steps:
                status = (f"step {step.step} / {steps} · distance {step.distance[0]:.4f} · "
                          f"{time.monotonic() - started:.1f} s")
                pair = _gallery([seen, to_image(projector.images[0])], ["your image", f"step {step.step}"])
                yield pair, status, gr.skip(), gr.skip(), None
        result = projector.results()[0]
        renderings = projection.render_classes(self.model, result, latents)
        carried = "its z with each class input" if space == "z" else f"w − mean w of {name} + mean w of the class"
        status = (f"Projected into **{name}** in {time.monotonic() - started:.1f} s ({steps} steps, {space}, "
                  f"{distance.name} distance): PSNR {result.psnr:.1f} dB. Below, the same latent in every class "
                  f"({carried}), and along a direction.")
        yield (_gallery([seen, result.image], ["your image", "projection"]), status,
               _gallery(list(renderings.values()), [f"as {c}" for c in renderings]),
               self._direction_strip(result, direction), result)

    def _direction_strip(self, result, index):
        found = self.cached("directions",
                            lambda: editing.pca_directions(self.model, num_components=self.num_directions))
        images, captions = [], []
        for name in self.classes:
            images += projection.along_direction(self.model, result, name, found, index, DIRECTION_STRENGTHS,
                                                 self._latents())
            captions += [f"{name} · PC{index} {s:+g}σ" for s in DIRECTION_STRENGTHS]
        return _gallery(images, captions)

    @_user_errors
    def projection_direction(self, result, index):
        """The last projection (from the session's state) along another direction."""
        if result is None:
            raise CocktailError("project an image first")
        index = check_range("direction", index, 0, self.num_directions - 1, integer=True)
        return self._direction_strip(result, index)


def to_image(image):
    """One image [C, H, W] in [-1, 1] → PIL."""
    return to_pil(image[None])[0]


def psi_slider():
    return gr.Slider(MIN_PSI, MAX_PSI, value=0.7, step=0.05, label="truncation ψ",
                     info="lower: more typical, less varied")


def seed_box(value, label):
    return gr.Number(value, label=label, precision=0, minimum=0, maximum=MAX_SEED)


def gallery(label, columns=4):
    return gr.Gallery(label=label, columns=columns, height="auto", object_fit="contain", interactive=False,
                      format="png")  # lossless: what a visitor downloads is what the seed gives


def two_endpoints(classes, class_a_label, seed_a_label, class_b_label, seed_b_label):
    """Class and seed of where an edit starts and of where it ends, in one row (the first two classes)."""
    with gr.Row():
        class_a = gr.Dropdown(classes, value=classes[0], label=class_a_label)
        seed_a = seed_box(1, seed_a_label)
        class_b = gr.Dropdown(classes, value=classes[min(1, len(classes) - 1)], label=class_b_label)
        seed_b = seed_box(2, seed_b_label)
    return class_a, seed_a, class_b, seed_b


def generate_tab(handlers: DemoHandlers):
    classes = handlers.classes
    with gr.Tab("Generate"):
        with gr.Row():
            class_name = gr.Dropdown(classes, value=classes[0], label="class")
            seeds = gr.Textbox("0-7", label="seeds",
                               info="e.g. 0-7 or 1,5,9; a single seed gives `count` consecutive ones")
            count = gr.Slider(1, MAX_IMAGES, value=8, step=1, label="count")
            psi = psi_slider()
        with gr.Row():
            generate_button = gr.Button("Generate", variant="primary")
            random_button = gr.Button("Random seeds")
        samples = gallery("samples")
    generate, inputs = gpu(handlers.generate), [class_name, seeds, count, psi]
    generate_button.click(generate, inputs, samples, api_name="generate")
    seeds.submit(generate, inputs, samples, api_visibility="private")
    random_button.click(handlers.random_seeds, count, seeds, api_name="random_seeds").then(
        generate, inputs, samples, api_visibility="private")


def style_mixing_tab(handlers: DemoHandlers):
    num_ws = handlers.num_ws
    with gr.Tab("Style mixing"):
        class_a, seed_a, class_b, seed_b = two_endpoints(handlers.classes, "coarse styles from class", "coarse seed",
                                                         "fine styles from class", "fine seed")
        with gr.Row():
            crossover = gr.Slider(1, num_ws - 1, value=max(1, num_ws // 2), step=1,
                                  label="crossover layer", info="layers below it: coarse image")
            psi = psi_slider()
        button = gr.Button("Mix", variant="primary")
        images = gallery("coarse · fine · mix", columns=3)
    button.click(gpu(handlers.style_mix), [class_a, seed_a, class_b, seed_b, crossover, psi], images,
                 api_name="style_mix")


def interpolation_tab(handlers: DemoHandlers):
    with gr.Tab("Interpolation"):
        class_a, seed_a, class_b, seed_b = two_endpoints(handlers.classes, "from class", "from seed", "to class",
                                                         "to seed")
        with gr.Row():
            steps = gr.Slider(2, MAX_STEPS, value=8, step=1, label="steps")
            psi = psi_slider()
            fmt = gr.Radio(list(editing.ANIMATION_FORMATS), value="gif", label="animation")
        button = gr.Button("Interpolate", variant="primary")
        frames = gallery("frames", columns=MAX_STEPS)
        animation = gr.Image(type="filepath", label="animation", interactive=False, height=256)
    button.click(gpu(handlers.interpolate), [class_a, seed_a, class_b, seed_b, steps, psi, fmt],
                 [frames, animation], api_name="interpolate")


def directions_tab(handlers: DemoHandlers):
    with gr.Tab("Directions"):
        gr.Markdown("Principal directions of W over all classes (GANSpace-style PCA, no labels), "
                    "applied to any class. Computed once, on first use.")
        with gr.Row():
            index = gr.Slider(0, handlers.num_directions - 1, value=0, step=1,
                              label="direction (principal component)")
            strength = gr.Slider(-MAX_STRENGTH, MAX_STRENGTH, value=2.0, step=0.25, label="strength (σ)")
        with gr.Row():
            class_name = gr.Dropdown(handlers.classes, value=handlers.classes[0], label="class")
            seeds = gr.Textbox("0-3", label="seeds")
            psi = psi_slider()
        button = gr.Button("Apply", variant="primary")
        edited = gallery("edited")
    button.click(gpu(handlers.directions), [index, strength, class_name, seeds, psi], edited,
                 api_name="directions")


def compare_tab(handlers: DemoHandlers):
    with gr.Tab("Compare"):
        gr.Markdown("The same seed through the union and through each source model it was merged from.")
        with gr.Row():
            seed = seed_box(0, "seed")
            psi = psi_slider()
        button = gr.Button("Compare", variant="primary")
        images = gallery("union · source", columns=2)
        note = gr.Markdown()
    button.click(gpu(handlers.compare), [seed, psi], [images, note], api_name="compare")


def your_image_tab(handlers: DemoHandlers):
    """Upload an image (or pick a shipped real one), watch it being projected, see it in every class."""
    classes = handlers.classes
    with gr.Tab("Your image", elem_id="your-image"):
        resolution = handlers.model.generator.img_resolution
        gr.Markdown("Project a real image into one class of the union, then draw the same latent as every "
                    "other class and along a PCA direction. Grey, 16-bit and transparent images are converted; "
                    f"the image is centre-cropped to a square and resized to {resolution} px.")
        with gr.Row():
            with gr.Column():
                upload = gr.File(label="your image", file_types=["image"], type="filepath")
                class_name = gr.Dropdown(classes, value=classes[0], label="the class it shows")
                with gr.Row():
                    steps = gr.Slider(10, MAX_PROJECTION_STEPS, value=PROJECTION_STEPS, step=10, label="steps")
                    space = gr.Radio(list(projection.SPACES), value="w", label="latent space",
                                     info="w: one w; w+: one per layer (closer, carries less); z: the class input")
                direction = gr.Slider(0, handlers.num_directions - 1, value=0, step=1,
                                      label="direction (principal component)")
                button = gr.Button("Project", variant="primary")
            pair = gallery("as the model sees it · projection", columns=2)
        status = gr.Markdown()
        if handlers.examples:
            gr.Examples([[str(path), name] for name, path in handlers.examples.items()], [upload, class_name],
                        label="or one of these real test images")
        renderings = gallery("in every class", columns=max(len(classes), 2))
        strip = gallery("along the direction", columns=len(DIRECTION_STRENGTHS))
        result = gr.State()
    button.click(gpu(handlers.project), [upload, class_name, steps, space, direction],
                 [pair, status, renderings, strip, result], api_name="project")
    direction.release(gpu(handlers.projection_direction), [result, direction], strip, api_visibility="private")


def model_info_tab(model: UnionModel, model_card: str | None, samples):
    with gr.Tab("Model info"):
        gr.Markdown(model_card or model_summary(model))
        if samples is not None:
            gr.Image(samples, label="samples, one row per class", interactive=False, format="png")
        gr.JSON({"classes": model.class_names}, label="classes")
        provenance = Provenance.from_dict(model.provenance)
        gr.JSON(_json_safe(provenance.to_dict()), label="provenance")
        gr.JSON(_json_safe(provenance.metrics or {}), label="metrics")


def _json_safe(value):
    """What the browser can show: anything JSON cannot hold, as text."""
    return json.loads(json.dumps(value, default=str))


def build_demo(model: UnionModel, model_card: str | None = None, samples=None, from_hub: bool = False,
               queue_size: int = QUEUE_SIZE, projection_distance: str | None = None) -> gr.Blocks:
    """The demo's UI for one union model; the caller launches it (tests launch it on a tiny model).

    ``model_card`` is the card's markdown (without front matter), ``samples`` its sample grid (PIL).
    ``from_hub``: the model is someone else's, so Compare only fetches Hub sources at their recorded commit.
    ``projection_distance``: see ``DemoHandlers``.
    """
    handlers = DemoHandlers(model, from_hub, projection_distance)
    # Every response has its own image files (see _gallery): every 15 minutes, those older than 30 go.
    with gr.Blocks(title="GAN Cocktail", delete_cache=(900, 1800)) as demo:
        gr.Markdown("# GAN Cocktail\nOne class-conditional GAN merged from several single-domain GANs. "
                    "All classes share one latent space, so styles, walks and edits cross domains.\n\n"
                    + model_summary(model))
        generate_tab(handlers)
        style_mixing_tab(handlers)
        interpolation_tab(handlers)
        directions_tab(handlers)
        compare_tab(handlers)
        your_image_tab(handlers)
        model_info_tab(model, model_card, samples)
    demo.queue(max_size=queue_size)  # beyond it: gradio's "Queue is full! Please try again." (never a drop)
    return demo


def from_the_hub(spec: str) -> bool:
    """Whether ``--model`` names a Hub model (someone else's) rather than a shipped example or a local folder."""
    return parse(spec).on_the_hub


def load_model(spec: str, device: str) -> tuple[UnionModel, str | None, Image.Image | None]:
    """A union model, its card's markdown and its sample grid, from ``example:…``, a folder or the Hub."""
    spec = parse(spec).whole_model()  # a missing local folder is reported as such, before any "downloading"
    if spec.on_the_hub:
        print(f"downloading {spec} from the Hugging Face Hub …", flush=True)
    model = UnionModel.from_pretrained(spec, load_discriminator=False, device=device)
    card_path, samples_path = model.folder / "README.md", model.folder / SAMPLES_FILE
    # The card's YAML front matter is metadata for the Hub, not text for visitors.
    card = re.sub(r"\A---\n.*?\n---\n", "", card_path.read_text(encoding="utf-8"), flags=re.S) \
        if card_path.is_file() else None
    samples = Image.open(samples_path).convert("RGB") if samples_path.is_file() else None
    return model, card, samples


def default_model() -> str:
    return DEFAULT_MODEL_FILE.read_text().strip() if DEFAULT_MODEL_FILE.is_file() else DEFAULT_UNION


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=default_model(),
                        help="example:<name>, a local model folder or a Hub id org/name[@revision]")
    # Hosts such as Hugging Face Spaces say where to listen through gradio's own variables.
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                        help="interface to listen on (0.0.0.0 for all; default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    parser.add_argument("--share", action="store_true", help="also open a temporary public gradio.live link")
    args = parser.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, card, samples = load_model(args.model, device)
    print(f"serving {args.model} ({', '.join(model.class_names)}) on {device}", flush=True)
    demo = build_demo(model, card, samples, from_hub=from_the_hub(args.model))
    demo.launch(server_name=args.host, server_port=args.port, share=args.share,
                max_file_size=projection.MAX_IMAGE_BYTES)  # larger uploads are refused before they are stored


if __name__ == "__main__":
    run_script(main)
