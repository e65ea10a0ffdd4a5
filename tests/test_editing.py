"""Editing in the shared W space: style mixing, interpolation, animations, PCA directions, compare."""

import numpy as np
import pytest
import torch
from PIL import Image
from training_helpers import TINY_G_KWARGS

from cocktail import editing
from cocktail.errors import CocktailError
from cocktail.networks import Generator
from cocktail.union import UnionModel


def tiny_union(class_names=("cat", "dog", "car"), provenance=None, seed=0):
    """A tiny conditional union with random (not function-preserving) weights: classes really differ."""
    torch.manual_seed(seed)
    generator = Generator(**TINY_G_KWARGS, c_dim=len(class_names) if len(class_names) > 1 else 0)
    with torch.no_grad():
        generator.mapping.w_avg.normal_(generator=torch.Generator().manual_seed(seed + 1))
    return UnionModel(generator, None, class_names, provenance)


@pytest.fixture(scope="module")
def model():
    return tiny_union()


def pixels(images):
    return np.stack([np.asarray(im, dtype=np.int16) for im in images])


def assert_same_images(a, b, tolerance=1):
    """Equal up to rounding: batch composition may change the last float bit of a pixel."""
    assert np.abs(pixels(a) - pixels(b)).max() <= tolerance


def test_class_ws_and_synthesize_reproduce_sampling(model):
    ws = editing.class_ws(model, "dog", [3, 4], truncation=0.7)
    assert ws.shape == (2, model.generator.num_ws, model.generator.w_dim)
    assert_same_images(editing.synthesize(model, ws, batch_size=1), model.sample("dog", [3, 4], 0.7))


def test_style_mix_takes_coarse_layers_from_one_class_and_fine_from_another(model):
    crossover = 3
    coarse, fine, mixed = editing.style_mix(model, ("cat", 1), ("car", 2), crossover, truncation=0.8)
    assert_same_images([coarse, fine], model.sample("cat", [1], 0.8) + model.sample("car", [2], 0.8))
    w_cat, w_car = editing.class_ws(model, "cat", [1], 0.8), editing.class_ws(model, "car", [2], 0.8)
    by_hand = torch.cat([w_cat[:, :crossover], w_car[:, crossover:]], dim=1)
    assert torch.equal(editing.mix_ws(w_cat, w_car, crossover), by_hand)
    assert_same_images([mixed], editing.synthesize(model, by_hand))
    assert np.abs(pixels([mixed]) - pixels([coarse])).max() > 10
    assert np.abs(pixels([mixed]) - pixels([fine])).max() > 10


@pytest.mark.parametrize("crossover", [0, 8, -1])
def test_style_mix_rejects_a_crossover_outside_the_layers(model, crossover):
    with pytest.raises(CocktailError, match="between 1 and 7"):
        editing.style_mix(model, ("cat", 1), ("car", 2), crossover)


def test_interpolation_walks_from_one_class_and_seed_to_another(model):
    frames = editing.interpolate(model, ("cat", 5), ("dog", 9), steps=5, truncation=0.9)
    assert len(frames) == 5
    assert_same_images([frames[0]], model.sample("cat", [5], 0.9))
    assert_same_images([frames[-1]], model.sample("dog", [9], 0.9))
    steps = [np.abs(a - b).mean() for a, b in zip(pixels(frames)[:-1], pixels(frames)[1:], strict=True)]
    assert all(s > 0 for s in steps)
    with pytest.raises(CocktailError, match="at least 2 steps"):
        editing.interpolate(model, ("cat", 5), ("dog", 9), steps=1)


@pytest.mark.parametrize("fmt", ["gif", "webp"])
def test_save_animation_writes_a_looping_animation(model, tmp_path, fmt):
    frames = editing.interpolate(model, ("cat", 0), ("car", 1), steps=4)
    path = editing.save_animation(frames, tmp_path / f"walk.{fmt}")
    with Image.open(path) as animation:
        assert animation.is_animated and animation.n_frames == 6  # 4 forward + 2 back (boomerang)
        assert animation.size == frames[0].size
    assert [p.name for p in tmp_path.iterdir()] == [f"walk.{fmt}"]  # no staging file left behind
    with pytest.raises(CocktailError, match="gif or webp"):
        editing.save_animation(frames, tmp_path / "walk.png")


def test_pca_directions_are_orthonormal_sorted_and_reproducible(model):
    found = editing.pca_directions(model, num_components=6, num_samples=2048)
    assert len(found) == 6 and found.components.shape == (6, model.generator.w_dim)
    assert torch.allclose(found.components @ found.components.T, torch.eye(6), atol=1e-5)
    assert torch.all(found.stddev[:-1] >= found.stddev[1:]) and torch.all(found.stddev > 0)
    assert 0 < found.explained_variance_ratio.sum() <= 1
    again = editing.pca_directions(model, num_components=6, num_samples=2048)
    assert torch.equal(found.components, again.components)
    with pytest.raises(CocktailError, match="num_components"):
        editing.pca_directions(model, num_components=0)


def test_first_direction_carries_the_most_variance_of_fresh_w_samples(model):
    found = editing.pca_directions(model, num_components=4, num_samples=4096)
    z = torch.randn(4096, model.generator.z_dim, generator=torch.Generator().manual_seed(123))
    c = model.labels_to_c(torch.randint(3, [4096], generator=torch.Generator().manual_seed(4)).tolist())
    with torch.no_grad():
        w = model.generator.mapping(z, c)[:, 0]
    along = ((w - found.mean) @ found.components.T).std(0)
    assert torch.allclose(along, found.stddev, rtol=0.1)
    random_dir = torch.nn.functional.normalize(torch.randn(model.generator.w_dim), dim=0)
    assert along[0] > 1.5 * ((w - found.mean) @ random_dir).std()


def test_edit_moves_every_layer_along_the_direction_for_any_class(model):
    found = editing.pca_directions(model, num_components=3, num_samples=1024)
    ws = editing.class_ws(model, "car", [1, 2])
    shifted = editing.shift_ws(ws, found, 1, -2.5)
    expected_step = -2.5 * found.stddev[1] * found.components[1]
    assert torch.allclose(shifted - ws, expected_step.expand_as(ws), atol=1e-6)
    for name in model.class_names:
        assert_same_images(editing.edit(model, found, 0, 0.0, name, [1, 2]), model.sample(name, [1, 2]))
        edited = editing.edit(model, found, 0, 3.0, name, [1, 2])
        assert np.abs(pixels(edited) - pixels(model.sample(name, [1, 2]))).mean() > 1
    with pytest.raises(CocktailError, match="direction index"):
        editing.edit(model, found, 3, 1.0, "cat", [0])


def test_compare_uses_the_sources_that_load_and_notes_the_others(tmp_path):
    source = tiny_union(("cat",), seed=7)
    source.save_pretrained(tmp_path / "cat-model", write_card=False)
    union = tiny_union(provenance={"sources": [
        {"name": "cat", "spec": str(tmp_path / "cat-model")},
        {"name": "dog", "spec": "example:no-such-model"},
        {"name": "car", "spec": ""},
    ]})
    sources = editing.load_sources(union, local_files_only=True)
    assert [(s.name, s.class_index) for s in sources] == [("cat", 0), ("dog", 1), ("car", 2)]
    assert sources[0].model is not None and sources[0].note is None
    assert sources[1].model is None and "example:no-such-model could not be loaded" in sources[1].note
    assert sources[2].model is None and "no loadable model" in sources[2].note

    rows = editing.compare(union, sources, seed=11, truncation=0.8)
    assert [(name, s is not None) for name, _, s in rows] == [("cat", True), ("dog", False), ("car", False)]
    union_images = [union_image for _, union_image, _ in rows]
    assert_same_images(union_images, [union.sample(k, [11], 0.8)[0] for k in range(3)])
    assert_same_images([rows[0][2]], source.sample(0, [11], 0.8))


def test_load_sources_without_provenance_is_empty(model):
    assert editing.load_sources(model) == []
