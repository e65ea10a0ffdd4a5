"""GAN Cocktail demo: one union GAN, many domains, one shared latent space.

    python app.py                          # the shipped example union on http://127.0.0.1:7860, offline
    python app.py --model org/name@rev     # a union model from the Hub (or a local model folder)

UI wiring only: sampling and editing live in ``cocktail.union`` and ``cocktail.editing``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import re
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

from cocktail import editing
from cocktail.assets import DEFAULT_UNION
from cocktail.errors import CocktailError, run_script
from cocktail.specs import parse
from cocktail.union import SAMPLES_FILE, UnionModel

MAX_IMAGES = 16
MAX_STEPS = 16
MIN_PSI, MAX_PSI = 0.0, 1.5
MAX_STRENGTH = 10.0
NUM_DIRECTIONS = 10
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

try:  # ZeroGPU Spaces attach a GPU only while a `spaces.GPU` function runs
    import spaces

    gpu = spaces.GPU
except (ImportError, AttributeError):  # not installed, or only this repo's `spaces/` folder
    def gpu(fn):
        return fn


def _user_errors(fn):
    """Turn expected errors into `gr.Error`, which the browser and API clients show as a readable message."""
    @functools.wraps(fn)
    def wrapper(*args):
        try:
            return fn(*args)
        except CocktailError as err:
            raise gr.Error(str(err)) from None
    return wrapper


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


def build_demo(model: UnionModel, model_card: str | None = None, samples=None, from_hub: bool = False,
               queue_size: int = QUEUE_SIZE) -> gr.Blocks:
    """The demo's UI for one union model; the caller launches it (tests launch it on a tiny model).

    ``model_card`` is the card's markdown (without front matter), ``samples`` its sample grid (PIL).
    ``from_hub``: the model is someone else's, so Compare only fetches Hub sources at their recorded commit.
    """
    num_ws = model.generator.num_ws
    num_directions = min(NUM_DIRECTIONS, model.generator.w_dim)
    classes = model.class_names
    animation_dir = tempfile.TemporaryDirectory(prefix="gan-cocktail-")  # removed when the app goes away
    cache_lock = threading.Lock()
    cache: dict[str, object] = {}
    background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="load-sources")

    def cached(key, compute):
        """Compute once, on first use, shared by every visitor (PCA of W, loaded source models)."""
        with cache_lock:
            if key not in cache:
                cache[key] = compute()
            return cache[key]

    def psi_of(value):
        return editing.check_range("truncation ψ", value, MIN_PSI, MAX_PSI)

    def class_of(name):
        return classes[model.class_index(name if name is not None else "")]

    def endpoint(class_name, seed):
        return class_of(class_name), editing.check_seed(seed)

    @_user_errors
    def random_seeds(count):
        count = editing.check_range("number of images", count, 1, MAX_IMAGES, integer=True)
        start = random.randint(0, editing.MAX_SEED - count + 1)
        return f"{start}-{start + count - 1}" if count > 1 else str(start)

    @gpu
    @_user_errors
    def generate(class_name, seeds_text, count, psi):
        name, psi = class_of(class_name), psi_of(psi)
        count = editing.check_range("number of images", count, 1, MAX_IMAGES, integer=True)
        seeds = editing.parse_seeds(seeds_text, MAX_IMAGES)
        if len(seeds) == 1 and count > 1:  # one seed means "start here": count consecutive seeds
            seeds = editing.parse_seeds(f"{seeds[0]}-{seeds[0] + count - 1}", MAX_IMAGES)
        images = model.sample(name, seeds, truncation=psi)
        return _gallery(images, [f"{name} · seed {s} · ψ {psi:g}" for s in seeds])

    @gpu
    @_user_errors
    def style_mix(class_a, seed_a, class_b, seed_b, crossover, psi):
        a, b, psi = endpoint(class_a, seed_a), endpoint(class_b, seed_b), psi_of(psi)
        crossover = editing.check_range("crossover layer", crossover, 1, num_ws - 1, integer=True)
        images = editing.style_mix(model, a, b, crossover, truncation=psi)
        return _gallery(images, [f"coarse: {a[0]} · seed {a[1]}", f"fine: {b[0]} · seed {b[1]}",
                                 f"mix at layer {crossover} · ψ {psi:g}"])

    @gpu
    @_user_errors
    def interpolate(class_a, seed_a, class_b, seed_b, steps, psi, fmt):
        a, b, psi = endpoint(class_a, seed_a), endpoint(class_b, seed_b), psi_of(psi)
        steps = editing.check_range("steps", steps, 2, MAX_STEPS, integer=True)
        if fmt not in editing.ANIMATION_FORMATS:
            formats = " or ".join(editing.ANIMATION_FORMATS)
            raise CocktailError(f"animation format must be {formats}, got {fmt!r}")
        frames = editing.interpolate(model, a, b, steps, truncation=psi)
        # Named by its parameters: a repeated request rewrites the same small file instead of adding one.
        name = f"{classes.index(a[0])}-{a[1]}_{classes.index(b[0])}-{b[1]}_{steps}_{psi:g}.{fmt}"
        path = Path(animation_dir.name) / name
        staging = editing.save_animation(frames, path.with_name(f".{uuid.uuid4().hex}.{fmt}"))
        os.replace(staging, path)  # whole: a visitor downloading the previous copy never reads a partial one
        captions = [f"{i / (steps - 1):.2f}" for i in range(steps)]
        return _gallery(frames, captions), str(path)

    def fit_directions():
        return editing.pca_directions(model, num_components=num_directions)

    @gpu
    @_user_errors
    def directions(index, strength, class_name, seeds_text, psi):
        name, psi = class_of(class_name), psi_of(psi)
        index = editing.check_range("direction", index, 0, num_directions - 1, integer=True)
        strength = editing.check_range("strength", strength, -MAX_STRENGTH, MAX_STRENGTH)
        seeds = editing.parse_seeds(seeds_text, MAX_IMAGES)
        found = cached("directions", fit_directions)
        images = editing.edit(model, found, index, strength, name, seeds, truncation=psi)
        return _gallery(images, [f"{name} · seed {s} · PC{index} {strength:+g}σ" for s in seeds])

    def load_sources():
        return editing.load_sources(model, hub_only=from_hub, limit=MAX_COMPARE_SOURCES,
                                    deadline=time.monotonic() + COMPARE_LOAD_S)

    @gpu
    @_user_errors
    def compare(seed, psi):
        seed, psi = editing.check_seed(seed), psi_of(psi)
        loading = cached("sources", lambda: background.submit(load_sources))  # once, for every visitor
        try:
            sources = loading.result(timeout=COMPARE_WAIT_S)
        except FutureTimeout:
            raise CocktailError("the source models are still loading; try again in a minute") from None
        if not sources:
            return [], "This model's provenance lists no source models to compare with."
        items = []
        for name, union_image, source_image in editing.compare(model, sources, seed, truncation=psi):
            items.append((union_image, f"union · {name} · seed {seed}"))
            if source_image is not None:
                items.append((source_image, f"source {name} · seed {seed}"))
        notes = [f"- {s.note}" for s in sources if s.note]
        note = "Sources not available here, so skipped:\n" + "\n".join(notes) if notes else ""
        return items, note

    first, second = classes[0], classes[min(1, len(classes) - 1)]
    psi_slider = functools.partial(gr.Slider, MIN_PSI, MAX_PSI, step=0.05, label="truncation ψ",
                                   info="lower: more typical, less varied")
    seed_box = functools.partial(gr.Number, precision=0, minimum=0, maximum=editing.MAX_SEED)
    gallery = functools.partial(gr.Gallery, columns=4, height="auto", object_fit="contain", interactive=False,
                                format="png")  # lossless: what a visitor downloads is what the seed gives

    # Every response has its own image files (see _gallery): every 15 minutes, those older than 30 go.
    with gr.Blocks(title="GAN Cocktail", delete_cache=(900, 1800)) as demo:
        gr.Markdown("# GAN Cocktail\nOne class-conditional GAN merged from several single-domain GANs. "
                    "All classes share one latent space, so styles, walks and edits cross domains.\n\n"
                    + model_summary(model))
        with gr.Tab("Generate"):
            with gr.Row():
                gen_class = gr.Dropdown(classes, value=first, label="class")
                gen_seeds = gr.Textbox("0-7", label="seeds",
                                       info="e.g. 0-7 or 1,5,9; a single seed gives `count` consecutive ones")
                gen_count = gr.Slider(1, MAX_IMAGES, value=8, step=1, label="count")
                gen_psi = psi_slider(value=0.7)
            with gr.Row():
                gen_button = gr.Button("Generate", variant="primary")
                random_button = gr.Button("Random seeds")
            gen_gallery = gallery(label="samples")
        with gr.Tab("Style mixing"):
            with gr.Row():
                mix_class_a = gr.Dropdown(classes, value=first, label="coarse styles from class")
                mix_seed_a = seed_box(value=1, label="coarse seed")
                mix_class_b = gr.Dropdown(classes, value=second, label="fine styles from class")
                mix_seed_b = seed_box(value=2, label="fine seed")
            with gr.Row():
                mix_layer = gr.Slider(1, num_ws - 1, value=max(1, num_ws // 2), step=1,
                                      label="crossover layer", info="layers below it: coarse image")
                mix_psi = psi_slider(value=0.7)
            mix_button = gr.Button("Mix", variant="primary")
            mix_gallery = gallery(label="coarse · fine · mix", columns=3)
        with gr.Tab("Interpolation"):
            with gr.Row():
                int_class_a = gr.Dropdown(classes, value=first, label="from class")
                int_seed_a = seed_box(value=1, label="from seed")
                int_class_b = gr.Dropdown(classes, value=second, label="to class")
                int_seed_b = seed_box(value=2, label="to seed")
            with gr.Row():
                int_steps = gr.Slider(2, MAX_STEPS, value=8, step=1, label="steps")
                int_psi = psi_slider(value=0.7)
                int_format = gr.Radio(list(editing.ANIMATION_FORMATS), value="gif", label="animation")
            int_button = gr.Button("Interpolate", variant="primary")
            int_gallery = gallery(label="frames", columns=MAX_STEPS)
            int_animation = gr.Image(type="filepath", label="animation", interactive=False, height=256)
        with gr.Tab("Directions"):
            gr.Markdown("Principal directions of W over all classes (GANSpace-style PCA, no labels), "
                        "applied to any class. Computed once, on first use.")
            with gr.Row():
                dir_index = gr.Slider(0, num_directions - 1, value=0, step=1,
                                      label="direction (principal component)")
                dir_strength = gr.Slider(-MAX_STRENGTH, MAX_STRENGTH, value=2.0, step=0.25,
                                         label="strength (σ)")
            with gr.Row():
                dir_class = gr.Dropdown(classes, value=first, label="class")
                dir_seeds = gr.Textbox("0-3", label="seeds")
                dir_psi = psi_slider(value=0.7)
            dir_button = gr.Button("Apply", variant="primary")
            dir_gallery = gallery(label="edited")
        with gr.Tab("Compare"):
            gr.Markdown("The same seed through the union and through each source model it was merged from.")
            with gr.Row():
                cmp_seed = seed_box(value=0, label="seed")
                cmp_psi = psi_slider(value=0.7)
            cmp_button = gr.Button("Compare", variant="primary")
            cmp_gallery = gallery(label="union · source", columns=2)
            cmp_note = gr.Markdown()
        with gr.Tab("Model info"):
            gr.Markdown(model_card or model_summary(model))
            if samples is not None:
                gr.Image(samples, label="samples, one row per class", interactive=False, format="png")
            gr.JSON({"classes": classes}, label="classes")
            provenance = json.loads(json.dumps(model.provenance, default=str))  # JSON-safe for the browser
            gr.JSON(provenance, label="provenance")
            gr.JSON(provenance.get("metrics") or {}, label="metrics")

        gen_inputs = [gen_class, gen_seeds, gen_count, gen_psi]
        gen_button.click(generate, gen_inputs, gen_gallery, api_name="generate")
        gen_seeds.submit(generate, gen_inputs, gen_gallery, api_visibility="private")
        random_button.click(random_seeds, gen_count, gen_seeds, api_name="random_seeds").then(
            generate, gen_inputs, gen_gallery, api_visibility="private")
        mix_button.click(style_mix, [mix_class_a, mix_seed_a, mix_class_b, mix_seed_b, mix_layer, mix_psi],
                         mix_gallery, api_name="style_mix")
        int_button.click(interpolate, [int_class_a, int_seed_a, int_class_b, int_seed_b, int_steps, int_psi,
                                       int_format], [int_gallery, int_animation], api_name="interpolate")
        dir_button.click(directions, [dir_index, dir_strength, dir_class, dir_seeds, dir_psi], dir_gallery,
                         api_name="directions")
        cmp_button.click(compare, [cmp_seed, cmp_psi], [cmp_gallery, cmp_note], api_name="compare")
    demo.queue(max_size=queue_size)  # beyond it: gradio's "Queue is full! Please try again." (never a drop)
    return demo


def from_the_hub(spec: str) -> bool:
    """Whether ``--model`` names a Hub model (someone else's) rather than a shipped example or a local folder."""
    return parse(spec).on_the_hub


def load_model(spec: str, device: str) -> tuple[UnionModel, str | None, Image.Image | None]:
    """A union model, its card's markdown and its sample grid, from ``example:…``, a folder or the Hub."""
    spec = parse(spec).whole_model()  # a missing local folder is reported as such, before any "downloading"
    if spec.on_the_hub:
        from cocktail.hub import resolve

        print(f"downloading {spec} from the Hugging Face Hub …", flush=True)
        folder = resolve(spec).local_path
    else:
        folder = spec.path
    model = UnionModel.from_pretrained(folder, load_discriminator=False, device=device)
    card_path, samples_path = Path(folder) / "README.md", Path(folder) / SAMPLES_FILE
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
    demo.launch(server_name=args.host, server_port=args.port, share=args.share)


if __name__ == "__main__":
    run_script(main)
