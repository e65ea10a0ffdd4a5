"""The demo's handlers called directly, without a server: what each tab shows for plain input values."""

import threading

import gradio as gr
import numpy as np
import pytest
from PIL import Image
from test_app import load_app
from test_editing import assert_same_images, pixels, tiny_union

from cocktail import editing
from cocktail.assets import DEFAULT_UNION
from cocktail.union import UnionModel


@pytest.fixture(scope="module")
def app():
    return load_app()


@pytest.fixture(scope="module")
def handlers(app):
    """Handlers over a tiny 3-class union (cat, dog, car) whose provenance names one missing source."""
    return app.DemoHandlers(tiny_union(provenance={"sources": [{"name": "dog", "spec": "example:gone"}]}))


def images_and_captions(items):
    return [image for image, _ in items], [caption for _, caption in items]


def test_generate_gives_count_images_of_the_shipped_models_resolution_with_captions(app, single_thread):
    model = UnionModel.from_pretrained(DEFAULT_UNION, load_discriminator=False)
    chosen = model.class_names[-1]
    images, captions = images_and_captions(app.DemoHandlers(model).generate(chosen, "5", 3, 0.7))
    assert captions == [f"{chosen} · seed {s} · ψ 0.7" for s in (5, 6, 7)]  # one seed + count: 5..7
    resolution = model.generator.img_resolution
    assert all(image.size == (resolution, resolution) for image in images)
    assert_same_images(images, model.sample(chosen, [5, 6, 7], truncation=0.7))


def test_a_list_of_seeds_wins_over_count(handlers):
    _, captions = images_and_captions(handlers.generate("car", "1,5,9", 16, 1.0))
    assert captions == [f"car · seed {s} · ψ 1" for s in (1, 5, 9)]


def test_the_same_request_twice_gets_its_own_image_files(handlers):
    """Gradio names a cached image by the hash of its PNG: each response's images carry their own stamp."""
    first, second = (images_and_captions(handlers.generate("cat", "0-1", 2, 0.7))[0] for _ in range(2))
    assert_same_images(first, second)
    assert {image.info["Request"] for image in first}.isdisjoint(image.info["Request"] for image in second)
    assert first[0].info["Description"] == "GAN Cocktail: cat · seed 0 · ψ 0.7"


def test_random_seeds_gives_count_consecutive_seeds(handlers):
    seeds = editing.parse_seeds(handlers.random_seeds(5))
    assert seeds == list(range(seeds[0], seeds[0] + 5))
    assert len(editing.parse_seeds(handlers.random_seeds(1))) == 1


def test_style_mix_shows_both_parents_and_the_mix(handlers):
    images, captions = images_and_captions(handlers.style_mix("cat", 1, "car", 2, 3, 0.8))
    assert captions == ["coarse: cat · seed 1", "fine: car · seed 2", "mix at layer 3 · ψ 0.8"]
    assert_same_images(images, editing.style_mix(handlers.model, ("cat", 1), ("car", 2), 3, 0.8))


def test_interpolate_rewrites_one_animation_per_request(handlers):
    items, path = handlers.interpolate("cat", 4, "dog", 4, 3, 0.7, "gif")
    assert images_and_captions(items)[1] == ["0.00", "0.50", "1.00"]
    with Image.open(path) as animation:
        assert animation.format == "GIF" and animation.is_animated
    assert handlers.interpolate("cat", 4, "dog", 4, 3, 0.7, "gif")[1] == path
    assert handlers.interpolate("cat", 4, "dog", 4, 3, 0.7, "webp")[1] != path


def test_directions_are_fitted_once_and_strength_zero_is_the_sample(handlers, monkeypatch):
    fits = []
    fit = editing.pca_directions
    monkeypatch.setattr(editing, "pca_directions", lambda *a, **k: fits.append(1) or fit(*a, **k))
    images, captions = images_and_captions(handlers.directions(2, 0.0, "car", "0-2", 0.7))
    assert captions == [f"car · seed {s} · PC2 +0σ" for s in range(3)]
    assert_same_images(images, handlers.model.sample("car", range(3), 0.7))
    edited = images_and_captions(handlers.directions(0, -3.0, "dog", "0-2", 0.7))[0]
    unedited = handlers.model.sample("dog", range(3), 0.7)
    assert np.abs(pixels(edited) - pixels(unedited)).mean() > 1
    assert len(fits) == 1


def test_the_cache_computes_a_key_once_for_every_visitor(app):
    handlers = app.DemoHandlers(tiny_union())
    calls = []
    barrier = threading.Barrier(8)
    results = [None] * 8

    def visit(i):
        barrier.wait()
        results[i] = handlers.cached("key", lambda: calls.append(i) or object())

    threads = [threading.Thread(target=visit, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and all(result is results[0] for result in results)
    assert handlers.cached("other key", object) is not results[0]


def test_compare_shows_the_union_and_notes_the_missing_sources(handlers, app):
    items, note = handlers.compare(11, 0.8)
    assert images_and_captions(items)[1] == ["union · dog · seed 11"]
    assert note.startswith("Sources not available here, so skipped:\n- dog") and "example:gone" in note
    assert app.DemoHandlers(tiny_union()).compare(0, 0.7) == (
        [], "This model's provenance lists no source models to compare with.")


@pytest.mark.parametrize("method, args, message", [
    ("generate", ("dog", "0-99", 4, 0.7), "asks for more than 16 images"),
    ("generate", ("horse", "1", 4, 0.7), "horse"),
    ("generate", ("dog", "1", 4, 1.6), "1.6"),
    ("random_seeds", (0,), "number of images"),
    ("style_mix", ("cat", 1, "car", 2, 8, 0.7), "crossover layer"),
    ("interpolate", ("cat", 1, "dog", 2, 4, 0.7, "png"), "animation format must be gif or webp, got 'png'"),
    ("directions", (10, 1.0, "cat", "0-3", 0.7), "direction"),
    ("compare", (-5, 0.7), "-5"),
])
def test_bad_input_raises_a_readable_gradio_error(handlers, method, args, message):
    with pytest.raises(gr.Error) as info:
        getattr(handlers, method)(*args)
    assert message in info.value.message and "Traceback" not in info.value.message
