"""Projecting images into a union: the optimisation converges, its pieces follow their equations, the result
is drawn in other classes and along directions, and uploads of every kind are read or refused clearly."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from cocktail import editing
from cocktail import projection as P
from cocktail.assets import DEFAULT_UNION
from cocktail.errors import CocktailError
from cocktail.union import UnionModel


@pytest.fixture(scope="module")
def union():
    return UnionModel.from_pretrained(DEFAULT_UNION)


@pytest.fixture(scope="module")
def latents(union):
    return P.class_latents(union, num_samples=2000)


@pytest.fixture(scope="module")
def generated(union):
    """Two sneakers the union drew itself (constant noise): a projection can find them almost exactly."""
    return union.generate("sneaker", [3, 4], truncation=0.7)


@pytest.fixture(scope="module")
def projected(union, latents, generated):
    return P.project_many(union, generated, "sneaker", steps=50, space="w", distance="mse", latents=latents)


def test_an_image_the_union_drew_is_found_again(projected, generated):
    assert all(p.psnr > 28 for p in projected), [p.psnr for p in projected]
    assert all(p.space == "w" and p.ws.shape == (8, 32) and p.z is None for p in projected)
    assert all(torch.equal(p.ws[0], p.ws[-1]) for p in projected)  # one w for every layer
    torch.testing.assert_close(torch.stack([p.target for p in projected]), generated)


def test_the_distance_falls_over_the_run(projected):
    for p in projected:
        distances = [h["distance"] for h in p.history]
        assert len(distances) == 50 and [h["step"] for h in p.history] == list(range(1, 51))
        assert distances[-1] < 0.1 * distances[0]
        assert p.distance < 0.1 * distances[0]  # the final image, drawn without latent noise


def test_the_learning_rate_ramps_up_then_down_along_a_cosine():
    rate = [P.ramped_learning_rate(t, 0.1) for t in (0, 0.025, 0.05, 0.5, 0.75, 0.875, 1)]
    assert rate == pytest.approx([0, 0.05, 0.1, 0.1, 0.1, 0.05, 0])
    assert P.ramped_learning_rate(0.3, 0.1, ramp_up=0, ramp_down=0) == 0.1


def test_the_noise_penalty_is_small_for_white_noise_and_large_for_smooth_noise():
    gen = torch.Generator().manual_seed(0)
    white = torch.randn([2, 1, 32, 32], generator=gen)
    smooth = torch.nn.functional.interpolate(torch.randn([2, 1, 4, 4], generator=gen), size=32, mode="bilinear")
    smooth = (smooth - smooth.mean()) / smooth.std()
    assert P.noise_penalty([white]).shape == (2,)
    assert P.noise_penalty([white]).max() < 0.1 < 0.5 < P.noise_penalty([smooth]).min()  # white: ~2 / 64 at 8 × 8
    # Vertical stripes: −1 next door along a row, +1 along a column, so (−1)² + 1² at full size; 2 × 2
    # pooling averages them away, so the coarser levels add nothing. Edges wrap (32 columns: the pattern too).
    stripes = torch.tensor([1.0, -1.0]).repeat(16).expand(1, 1, 32, 32)
    assert P.noise_penalty([stripes]).item() == pytest.approx(2.0)


def test_each_image_of_a_batch_has_its_own_latent_and_noise(projected):
    assert not torch.equal(projected[0].ws, projected[1].ws)
    assert not torch.equal(projected[0].noise[0], projected[1].noise[0])
    for n in projected[0].noise:  # renormalised after every step
        assert abs(n.mean().item()) < 1e-5 and n.std().item() == pytest.approx(1, abs=1e-4)


def test_w_plus_and_z_projections(union, latents, generated):
    w_plus = P.project_many(union, generated[:1], "sneaker", steps=5, space="w+", distance="mse", latents=latents)[0]
    assert w_plus.ws.shape == (8, 32) and not torch.equal(w_plus.ws[0], w_plus.ws[-1])
    z = P.project_many(union, generated[:1], "sneaker", steps=5, space="z", distance="mse", latents=latents)[0]
    assert z.z.shape == (32,)
    c = union.labels_to_c([union.class_index("sneaker")])
    with torch.no_grad():
        torch.testing.assert_close(z.ws, union.generator.mapping(z.z[None], c)[0])


def test_the_projection_is_drawn_in_every_class(union, latents, projected):
    projection = projected[0]
    images = P.render_classes(union, projection, latents)
    assert list(images) == union.class_names
    assert all(image.size == (32, 32) for image in images.values())
    own = np.asarray(images["sneaker"], dtype=np.int16)
    assert np.abs(own - np.asarray(projection.image, dtype=np.int16)).max() <= 1
    for name in ("trouser", "bag"):
        assert np.abs(np.asarray(images[name], dtype=np.int16) - own).mean() > 5  # the class changed it


def test_a_w_projection_moves_by_the_difference_of_the_class_means(union, latents, projected):
    projection = projected[0]
    moved = P.carried_ws(union, projection, "bag", latents)
    torch.testing.assert_close(moved - projection.ws, (latents.means[2] - latents.means[1]).expand(8, -1))
    torch.testing.assert_close(P.carried_ws(union, projection, "sneaker", latents), projection.ws)


def test_along_a_direction_strength_zero_is_the_class_rendering(union, latents, projected):
    directions = editing.pca_directions(union, num_components=3, num_samples=512)
    strip = P.along_direction(union, projected[0], "bag", directions, 0, [-2, 0, 2], latents)
    bag = P.render_classes(union, projected[0], latents)["bag"]
    assert len(strip) == 3
    assert np.abs(np.asarray(strip[1], dtype=np.int16) - np.asarray(bag, dtype=np.int16)).max() <= 1
    assert np.abs(np.asarray(strip[0], dtype=np.int16) - np.asarray(strip[2], dtype=np.int16)).mean() > 2


def test_the_latent_is_saved_for_numpy(projected, tmp_path):
    path = projected[0].save(tmp_path / "latent.npz")
    with np.load(path) as saved:
        np.testing.assert_array_equal(saved["ws"], projected[0].ws.numpy())
        assert str(saved["class_name"]) == "sneaker" and str(saved["space"]) == "w"
        assert [saved[f"noise{i}"].shape for i in range(len(projected[0].noise))] == [
            n.shape for n in projected[0].noise]


def test_the_discriminator_distance_is_zero_for_the_target_and_needs_the_discriminator(union, generated):
    distance = P.make_distance("discriminator", union)
    reference = distance.reference(generated)
    with torch.no_grad():
        assert distance(generated, reference).abs().max() < 1e-6
        assert (distance(generated.flip(0), reference) > 0.01).all()
    without = UnionModel.from_pretrained(DEFAULT_UNION, load_discriminator=False)
    with pytest.raises(CocktailError, match="needs the model's discriminator"):
        P.make_distance("discriminator", without)


@pytest.mark.slow
def test_the_inception_distance_ranks_a_near_copy_above_another_image(union, generated):
    distance = P.make_distance("inception", union)
    reference = distance.reference(generated[:1])
    with torch.no_grad():
        same, near, other = distance(torch.cat([generated[:1], generated[:1] * 0.95, generated[1:]]), reference)
    assert same < 1e-6 < near < other


def test_psnr_of_a_known_error():
    target = torch.zeros([1, 3, 4, 4])
    off = target + 10 / 127.5  # 10 grey levels everywhere
    assert P.psnr(off, target) == pytest.approx(10 * math.log10(255**2 / 100), abs=1e-4)


@pytest.mark.parametrize("settings, message", [
    (dict(space="s"), "unknown latent space 's'"),
    (dict(steps=0), "steps must be at least 1"),
    (dict(distance="lpips"), "unknown distance 'lpips'"),
])
def test_bad_settings_are_refused(union, generated, settings, message):
    with pytest.raises(CocktailError, match=message):
        P.Projector(union, generated, "sneaker", **settings)


def test_images_of_the_wrong_shape_and_unknown_classes_are_refused(union, generated):
    with pytest.raises(CocktailError, match=r"images must be \[N, 3, 32, 32\]"):
        P.Projector(union, generated[:, :1], "sneaker", distance="mse")
    with pytest.raises(CocktailError, match="unknown class 'shoe'"):
        P.Projector(union, generated, "shoe", distance="mse")


# -- reading uploads ---------------------------------------------------------------------------------


def read(path, background=(-1, -1, -1)):
    return P.read_image(path, 32, 3, background)


def test_a_grey_image_becomes_rgb_and_a_large_one_is_centre_cropped(tmp_path):
    grey = np.zeros([40, 64], np.uint8)
    grey[:, 12:52] = 200
    Image.fromarray(grey, "L").save(tmp_path / "grey.png")
    image = read(tmp_path / "grey.png")
    assert image.shape == (3, 32, 32) and torch.equal(image[0], image[2])
    assert image.min() > 200 / 127.5 - 1 - 1e-4  # the centred 40 × 40 square is all object


def test_16_bit_grey_is_scaled_not_clipped(tmp_path):
    wide = np.full([32, 32], 32768, np.uint16)  # mid grey in 16 bits; clipping to 8 bits would make it white
    Image.fromarray(wide).save(tmp_path / "wide.png")
    with Image.open(tmp_path / "wide.png") as check:
        assert check.mode.startswith("I")
    image = read(tmp_path / "wide.png")
    assert image.mean().item() == pytest.approx(128 / 127.5 - 1, abs=0.01)


def test_transparency_is_composited_onto_the_models_background(tmp_path):
    rgba = np.zeros([32, 32, 4], np.uint8)
    rgba[8:24, 8:24] = (255, 255, 255, 255)  # an opaque white square on transparent pixels
    Image.fromarray(rgba, "RGBA").save(tmp_path / "cutout.png")
    on_black = read(tmp_path / "cutout.png", (-1, -1, -1))
    on_white = read(tmp_path / "cutout.png", (1, 1, 1))
    assert on_black[:, 0, 0].tolist() == [-1, -1, -1] and on_white[:, 0, 0].tolist() == [1, 1, 1]
    assert on_black[:, 16, 16].tolist() == on_white[:, 16, 16].tolist() == [1, 1, 1]
    palette = Image.fromarray(rgba[..., 0]).convert("P")
    palette.info["transparency"] = 0  # palette index 0 (black) is see-through
    palette.save(tmp_path / "palette.png")
    assert read(tmp_path / "palette.png", (1, 1, 1))[:, 0, 0].tolist() == [1, 1, 1]


def test_files_that_are_not_images_empty_or_too_large_are_refused(tmp_path, monkeypatch):
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(CocktailError, match="notes.png: not an image"):
        read(tmp_path / "notes.png")
    with pytest.raises(CocktailError, match="no such file"):
        read(tmp_path / "missing.png")
    Image.new("1", (6000, 5000)).save(tmp_path / "huge.png")  # 30 megapixels in a few KB
    with pytest.raises(CocktailError, match="6000 × 5000 pixels; images up to 25 megapixels"):
        read(tmp_path / "huge.png")
    Image.new("RGB", (32, 32)).save(tmp_path / "small.png")
    monkeypatch.setattr(P, "MAX_IMAGE_BYTES", 10)
    with pytest.raises(CocktailError, match="small.png: the file is .* MB; images up to"):
        read(tmp_path / "small.png")


def test_the_background_of_fashion_mnist_is_black(union, latents):
    colour = P.background_colour(union, "bag", latents)
    assert len(colour) == 3 and max(colour) < -0.8
