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
from cocktail.errors import CocktailError
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


@pytest.mark.parametrize("text, seeds", [
    ("0-3", [0, 1, 2, 3]), ("1,5,9", [1, 5, 9]), (" 7 ", [7]), ("0-1, 9,", [0, 1, 9]),
    (str(2**31 - 1), [2**31 - 1]),  # the largest seed
])
def test_parse_seeds_reads_ranges_and_lists(app, text, seeds):
    assert app.parse_seeds(text, max_count=16) == seeds


@pytest.mark.parametrize("text, message", [
    ("", "at least one"), ("a", "not a seed"), ("-1", "not a seed"), ("1.5", "not a seed"),
    ("1-2-3", "not a seed"), ("5-2", "backwards"), ("0-16", "more than 16"), ("0-9,10-20", "more than 16"),
    (str(2**31), "largest seed"),
])
def test_parse_seeds_rejects_bad_text_with_a_readable_message(app, text, message):
    with pytest.raises(CocktailError, match=message):
        app.parse_seeds(text, max_count=16)


@pytest.mark.parametrize("seed", [-1, 1.5, None, 2**31, "abc", float("nan"), float("inf")])
def test_check_seed_rejects_out_of_range(app, seed):
    with pytest.raises(CocktailError, match="seed must be"):
        app.check_seed(seed)


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


def test_random_seeds_gives_count_consecutive_seeds(app, handlers):
    seeds = app.parse_seeds(handlers.random_seeds(5))
    assert seeds == list(range(seeds[0], seeds[0] + 5))
    assert len(app.parse_seeds(handlers.random_seeds(1))) == 1


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


# -- Your image ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def union_handlers(app):
    """Handlers over the shipped union, projecting with pixel MSE (fast; the Inception default is tested apart)."""
    return app.DemoHandlers(UnionModel.from_pretrained(DEFAULT_UNION, load_discriminator=False),
                            projection_distance="mse")


def test_each_class_of_the_shipped_union_has_a_real_example(union_handlers):
    assert list(union_handlers.examples) == sorted(union_handlers.classes)
    for name, path in union_handlers.examples.items():
        assert path.name == f"{name}.png" and path.stat().st_size < 4096


def test_project_streams_its_progress_then_shows_every_class_and_a_direction(union_handlers):
    outputs = list(union_handlers.project(str(union_handlers.examples["sneaker"]), "sneaker", 40, "w", 1))
    pair, status, renderings, strip, result = outputs[0]
    (seen,), captions = images_and_captions(pair)
    assert captions == ["your image"] and seen.size == (32, 32)
    assert status == "projecting into **sneaker** …" and renderings == strip == [] and result is None
    progress = outputs[1:-1]  # every 2 steps of 40, the last one excepted
    assert [p[1].split(" · ")[0] for p in progress] == [f"step {s} / 40" for s in range(2, 40, 2)]
    assert [images_and_captions(p[0])[1] for p in progress] == [["your image", f"step {s}"] for s in range(2, 40, 2)]
    distances = [float(p[1].split("distance ")[1].split(" ")[0]) for p in progress]
    assert distances[-1] < 0.5 * distances[0]
    assert all(p[2] == p[3] == gr.skip() for p in progress)  # the galleries below wait for the result
    pair, status, renderings, strip, result = outputs[-1]
    assert status.startswith("Projected into **sneaker**") and f"PSNR {result.psnr:.1f} dB" in status
    assert result.psnr > 17  # a real sneaker, 40 steps: recognisably the same image
    (seen_again, reconstruction), captions = images_and_captions(pair)
    assert captions == ["your image", "projection"]
    assert_same_images([seen_again, reconstruction], [seen, result.image])
    images, captions = images_and_captions(renderings)
    assert captions == ["as trouser", "as sneaker", "as bag"]
    assert_same_images(images[1:2], [result.image])
    assert images_and_captions(strip)[1] == [f"{c} · PC1 {s:+g}σ" for c in ("trouser", "sneaker", "bag")
                                             for s in (-2, -1, 0, 1, 2)]
    assert_same_images(images_and_captions(strip)[0][7:8], [result.image])  # the sneaker row's 0σ
    other = images_and_captions(union_handlers.projection_direction(result, 0))[0]
    assert np.abs(pixels(other) - pixels(images_and_captions(strip)[0])).mean() > 1


def write_upload(path, kind):
    """An upload of one awkward kind: a file the demo must convert or refuse."""
    if kind == "grey 16-bit":
        wide = np.zeros([40, 40], np.uint16)
        wide[8:32, 12:28] = 40000
        Image.fromarray(wide).save(path)
    elif kind == "transparent":
        rgba = np.zeros([64, 64, 4], np.uint8)
        rgba[16:48, 24:40] = (230, 230, 230, 255)  # a bright object; everything else see-through white
        rgba[rgba[..., 3] == 0] = (255, 255, 255, 0)
        Image.fromarray(rgba, "RGBA").save(path)
    elif kind == "float":
        Image.fromarray(np.ones([8, 8], np.float32), "F").save(path, format="TIFF")
    elif kind == "huge":
        Image.new("1", (8000, 4000)).save(path, format="PNG")
    elif kind == "text":
        path.write_text("a shopping list, not a picture")
    return str(path)


@pytest.mark.parametrize("kind", ["grey 16-bit", "transparent"])
def test_awkward_uploads_are_converted_to_what_the_model_draws(union_handlers, tmp_path, kind):
    outputs = list(union_handlers.project(write_upload(tmp_path / "upload.png", kind), "trouser", 10, "w", 0))
    seen = np.asarray(images_and_captions(outputs[0][0])[0][0], dtype=np.int16)
    assert seen.shape == (32, 32, 3)
    assert seen[0, 0].max() < 30  # the background is the union's black, not white or transparent
    assert seen[16, 16].min() > 150  # the object keeps its brightness (16-bit is scaled, not clipped to white)
    assert outputs[-1][1].startswith("Projected into **trouser**")


@pytest.mark.parametrize("kind, args, message", [
    (None, ("bag", 10, "w", 0), "upload an image, or pick one of the examples"),
    ("text", ("bag", 10, "w", 0), "upload.png: not an image this program can read"),
    ("float", ("bag", 10, "w", 0), "floating-point pixels"),
    ("huge", ("bag", 10, "w", 0), "8000 × 4000 pixels; images up to 25 megapixels"),
    ("grey 16-bit", ("hat", 10, "w", 0), "unknown class 'hat'"),
    ("grey 16-bit", ("bag", 0, "w", 0), "steps must be an integer between 1 and 1000"),
    ("grey 16-bit", ("bag", 10, "s", 0), "latent space must be one of w, w+, z"),
    ("grey 16-bit", ("bag", 10, "w", 12), "direction must be an integer between 0 and 9"),
])
def test_bad_uploads_and_settings_get_a_readable_error(union_handlers, tmp_path, kind, args, message):
    path = write_upload(tmp_path / "upload.png", kind) if kind else None
    with pytest.raises(gr.Error) as info:
        list(union_handlers.project(path, *args))
    assert message in info.value.message and "Traceback" not in info.value.message
    with pytest.raises(gr.Error, match="project an image first"):
        union_handlers.projection_direction(None, 0)


def test_the_demo_projects_with_pixels_where_inception_is_not_installed(app, monkeypatch):
    def no_inception(name, union):
        raise CocktailError("the Inception network for FID/KID is not installed")

    monkeypatch.setattr(app.projection, "make_distance", no_inception)
    assert app.DemoHandlers(tiny_union())._distance().name == "mse"


@pytest.mark.slow
def test_the_demo_projects_with_inception_where_it_is_installed(app):
    assert app.DemoHandlers(tiny_union())._distance().name == "inception"
