"""Sources: shapes, range, labels and device of every kind; reproducibility per seed; clear errors."""

import textwrap
import warnings

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from cocktail.errors import CocktailError
from cocktail.images import resize_images
from cocktail.merge import load_ingredient
from cocktail.merge.surgery import make_conditional
from cocktail.recipe import resolve_recipe, source_entries
from cocktail.sources import ForeignSource, ImageFolderSource, MixtureSource, ModelSource, load_source
from cocktail.specs import latent_shape, split_options, with_options
from cocktail.union import UnionModel


def seeded(seed):
    return torch.Generator().manual_seed(seed)


def assert_batch(images, labels, batch, resolution, label=None, channels=3):
    assert images.shape == (batch, channels, resolution, resolution) and images.dtype == torch.float32
    assert images.device.type == "cpu" and labels.device.type == "cpu"
    assert images.min() >= -1 and images.max() <= 1
    assert labels.shape == (batch,) and labels.dtype == torch.int64
    if label is not None:
        assert (labels == label).all()


def without_noise(G):
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.zero_()
    return G


def with_class_embeddings(G):
    """Give the zero-initialised class columns of a converted G values, so classes draw differently."""
    with torch.no_grad():
        G.mapping.fc0.weight[:, G.z_dim:].normal_(generator=seeded(5))
    return G


# -- ModelSource -----------------------------------------------------------------------------------


def test_model_source_draws_what_g_draws_for_the_same_latents(tiny_networks):
    G = without_noise(tiny_networks[0])
    source = ModelSource(G, label=2, num_classes=3, truncation=0.7)
    images, labels = source.sample(6, "cpu", seeded(4))
    assert_batch(images, labels, 6, 32, label=2)
    z = torch.randn([6, G.z_dim], generator=seeded(4))  # the source's first draw is z
    with torch.no_grad():
        expected = G(z, truncation_psi=0.7, noise_mode="none").clamp(-1, 1)
    # Equal up to float rounding: on a CPU the source runs channels-last (faster, other summation order).
    torch.testing.assert_close(images, expected, atol=1e-5, rtol=0)
    assert not torch.equal(images, ModelSource(G, label=2, num_classes=3).sample(6, "cpu", seeded(4))[0])


def test_model_source_is_frozen_reproducible_and_leaves_the_global_rng_alone(tiny_networks):
    G = tiny_networks[0]  # random per-layer noise is on
    source = ModelSource(G)
    assert source.G is not G and not source.G.training
    assert not any(p.requires_grad for p in source.G.parameters())
    state = torch.get_rng_state()
    first, _ = source.sample(4, "cpu", seeded(1))
    assert torch.equal(torch.get_rng_state(), state)
    assert not first.requires_grad
    assert torch.equal(first, source.sample(4, "cpu", seeded(1))[0])
    assert not torch.equal(first, source.sample(4, "cpu", seeded(2))[0])
    with torch.no_grad():
        G.mapping.w_avg.add_(1.0)  # the source keeps its own copy
    assert torch.equal(first, source.sample(4, "cpu", seeded(1))[0])


def test_model_source_of_a_conditional_g_draws_its_class_and_resizes(tiny_networks):
    G3, _ = make_conditional(without_noise(tiny_networks[0]), None, 3)
    G3 = with_class_embeddings(G3)
    z = torch.randn([4, G3.z_dim], generator=seeded(0))
    with torch.no_grad():
        per_class = [G3(z, F.one_hot(torch.full([4], k), 3).float(), noise_mode="none") for k in range(3)]
    drawn, labels = ModelSource(G3, label=0, num_classes=2, class_index=2).sample(4, "cpu", seeded(0))
    torch.testing.assert_close(drawn, per_class[2].clamp(-1, 1), atol=1e-5, rtol=0)
    assert (labels == 0).all()
    default, labels = ModelSource(G3, label=1, num_classes=3).sample(4, "cpu", seeded(0))
    torch.testing.assert_close(default, per_class[1].clamp(-1, 1), atol=1e-5, rtol=0)
    assert (labels == 1).all()
    small, labels = ModelSource(G3, label=1, num_classes=3, resolution=16).sample(4, "cpu", seeded(0))
    assert_batch(small, labels, 4, 16, label=1)
    assert torch.allclose(small, F.avg_pool2d(per_class[1], 2).clamp(-1, 1), atol=1e-5)


def test_model_source_rejects_bad_labels_and_classes(tiny_networks):
    G = tiny_networks[0]
    with pytest.raises(CocktailError, match="label 3 is out of range for 3"):
        ModelSource(G, label=3, num_classes=3)
    with pytest.raises(CocktailError, match="unconditional"):
        ModelSource(G, class_index=1)
    G2, _ = make_conditional(G, None, 2)
    with pytest.raises(CocktailError, match="class index 2 is out of range"):
        ModelSource(G2, class_index=2)


# -- ForeignSource ---------------------------------------------------------------------------------


class ForeignSampler(torch.nn.Module):
    """A differently built 64 px sampler: a linear map of z, squashed."""

    def __init__(self):
        super().__init__()
        self.z_dim = 8
        self.fc = torch.nn.Linear(8, 3 * 64 * 64)

    def forward(self, z):
        return torch.tanh(self.fc(z)).view(-1, 3, 64, 64)


def scripted(module, path):
    """Save ``module`` as TorchScript, as a user of another GAN code base would hand it over."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(module).save(str(path))
    return path


@pytest.fixture
def torchscript_file(tmp_path):
    torch.manual_seed(0)
    module = ForeignSampler()
    return scripted(module, tmp_path / "sampler.ts"), module


def test_foreign_torchscript_at_64_px_is_resized_to_32(torchscript_file):
    path, module = torchscript_file
    source = load_source(str(path), 32, label=1, num_classes=2)
    assert isinstance(source, ForeignSource)
    images, labels = source.sample(5, "cpu", seeded(3))
    assert_batch(images, labels, 5, 32, label=1)
    with torch.no_grad():
        expected = F.avg_pool2d(module(torch.randn([5, 8], generator=seeded(3))), 2)
    assert torch.allclose(images, expected, atol=1e-6)
    assert torch.equal(images, source.sample(5, "cpu", seeded(3))[0])
    assert not torch.equal(images, source.sample(5, "cpu", seeded(4))[0])


def test_foreign_entry_point_from_a_user_module(tmp_path, monkeypatch):
    (tmp_path / "user_sampler.py").write_text(textwrap.dedent("""
        import torch

        def sample(batch_size, generator, device):
            pixels = torch.randint(0, 256, [batch_size, 3, 48, 48], dtype=torch.uint8, generator=generator)
            return pixels.to(device)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_ingredient("user_sampler:sample").name == "user_sampler"  # the module, not "sample"
    source = load_source("user_sampler:sample", 32, label=2, num_classes=3)
    images, labels = source.sample(4, "cpu", seeded(0))
    assert_batch(images, labels, 4, 32, label=2)
    assert torch.equal(images, source.sample(4, "cpu", seeded(0))[0])
    assert not torch.equal(images, source.sample(4, "cpu", seeded(1))[0])


class DCGAN(torch.nn.Module):
    """A plain DCGAN generator, as people script it: forward(z) with z [B, 100, 1, 1], no z_dim attribute."""

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.ConvTranspose2d(100, 16, 4, 1, 0), torch.nn.BatchNorm2d(16), torch.nn.ReLU(),
            torch.nn.ConvTranspose2d(16, 3, 4, 2, 1), torch.nn.Tanh())

    def forward(self, z):
        return self.net(z)


@pytest.fixture
def dcgan_file(tmp_path):
    torch.manual_seed(0)
    module = DCGAN().eval()
    return scripted(module, tmp_path / "faces.ts"), module


def test_a_torchscript_without_z_dim_takes_it_from_its_spec(dcgan_file):
    path, module = dcgan_file
    with pytest.raises(CocktailError, match=rf"no z_dim attribute; give .* as '{path}\?z_dim=100' \(in a recipe"):
        load_source(str(path), 16)
    source = load_source(f"{path}?z_dim=100x1x1", 16)  # 8 px images, upsampled
    images, labels = source.sample(3, "cpu", seeded(2))
    assert_batch(images, labels, 3, 16, label=0)
    with torch.no_grad():
        expected = resize_images(module(torch.randn([3, 100, 1, 1], generator=seeded(2))), 16)
    assert torch.allclose(images, expected, atol=1e-6)


def test_source_options_parse_and_print_back(dcgan_file):
    path = str(dcgan_file[0])
    assert split_options(f"{path}?z_dim=100") == (path, {"z_dim": (100,)})
    assert split_options("org/name@v1") == ("org/name@v1", {})
    for options in ({"z_dim": 100}, {"z_dim": [100, 1, 1]}, {"z_dim": "100x1x1"}):
        assert split_options(with_options(path, options))[1] == {"z_dim": latent_shape(options["z_dim"], path)}
    assert with_options(path, {"z_dim": [100, 1, 1]}) == f"{path}?z_dim=100x1x1"
    assert with_options(path, {}) == path
    cases = {
        f"{path}?z_dim=0": "z_dim must be a positive integer or a shape like 100x1x1, got '0'",
        f"{path}?z_dim=ten": "got 'ten'",
        f"{path}?zdim=100": r"unknown source option\(s\) zdim \(known: z_dim: the latent",
        f"{path}?z_dim": "source option 'z_dim' is not key=value",
        "example:trouser?z_dim=100": r"apply to TorchScript samplers \(.pt/.ts files\) only",
    }
    for spec, message in cases.items():
        with pytest.raises(CocktailError, match=message):
            load_source(spec, 16)
    for bad in (True, 2.5, [100, "x"], []):
        with pytest.raises(CocktailError, match="z_dim must be"):
            with_options(path, {"z_dim": bad})


def test_a_recipe_mapping_carries_source_options_into_the_merge(dcgan_file):
    path, _ = dcgan_file
    recipe = resolve_recipe({"sources": ["example:trouser", {"spec": str(path), "z_dim": [100, 1, 1]}]})
    entries = source_entries(recipe)
    assert entries[1] == (f"{path}?z_dim=100x1x1", None)
    ingredient = load_ingredient(*entries[1])
    assert ingredient.name == "faces" and ingredient.spec == f"{path}?z_dim=100x1x1"
    images, _ = ingredient.sampler(1, 2, 32, 1.0, "cpu").sample(2, "cpu", seeded(0))
    assert images.shape == (2, 3, 32, 32)
    with pytest.raises(CocktailError, match="unknown source option"):
        source_entries(resolve_recipe({"sources": [{"spec": str(path), "nmae": "faces"}]}))


def test_foreign_source_rejects_malformed_output():
    source = ForeignSource(lambda batch_size, generator, device: torch.zeros(batch_size, 64, 64), 32)
    with pytest.raises(CocktailError, match=r"returned \(2, 64, 64\); expected images \[2, C, H, W\]"):
        source.sample(2, "cpu")


# -- ImageFolderSource -----------------------------------------------------------------------------


def save(path, color, size=(40, 40), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)


def test_image_folder_with_subfolders_labels_images_by_sorted_folder_name(tmp_path):
    save(tmp_path / "dogs" / "a.png", (0, 0, 255))
    save(tmp_path / "dogs" / "deep" / "b.jpg", (0, 0, 255), size=(64, 48))
    save(tmp_path / "cats" / "c.webp", (255, 0, 0), size=(20, 20))
    save(tmp_path / "cats" / "d.png", (255, 0, 0, 0), mode="RGBA")
    save(tmp_path / "cats" / ".hidden.png", (0, 255, 0))  # skipped
    (tmp_path / "cats" / "notes.txt").write_text("not an image")  # skipped
    source = ImageFolderSource(tmp_path, 16, labels_from_subfolders=True)
    assert source.class_names == ["cats", "dogs"] and source.num_classes == 2 and len(source) == 4
    images, labels = source.sample(64, "cpu", seeded(0))
    assert_batch(images, labels, 64, 16)
    assert set(labels.tolist()) == {0, 1}
    red, blue = images[:, 0].mean((1, 2)), images[:, 2].mean((1, 2))
    assert ((red > 0.9) == (labels == 0)).all() and ((blue > 0.9) == (labels == 1)).all()
    assert torch.equal(images, source.sample(64, "cpu", seeded(0))[0])
    assert not torch.equal(labels, source.sample(64, "cpu", seeded(1))[1])


def test_image_folder_with_a_fixed_label_and_grey_images(tmp_path):
    save(tmp_path / "x" / "grey.png", 255, mode="L")
    save(tmp_path / "y.png", (0, 0, 0))
    source = load_source(str(tmp_path), 8, label=1, num_classes=2)
    assert isinstance(source, ImageFolderSource) and source.class_names is None
    images, labels = source.sample(32, "cpu", seeded(0))
    assert_batch(images, labels, 32, 8, label=1)
    assert set(images.mean((1, 2, 3)).tolist()) == {-1.0, 1.0}  # exact: uint8 storage round-trips


# -- MixtureSource ---------------------------------------------------------------------------------


def constant_source(label, num_classes=3):
    """A cheap source whose pixel value tells which source an image came from."""
    value = label / num_classes
    return ForeignSource(lambda batch_size, generator, device: torch.full([batch_size, 3, 8, 8], value),
                         8, label=label, num_classes=num_classes)


def test_mixture_keeps_labels_and_holds_class_percentages():
    mixture = MixtureSource([constant_source(k) for k in range(3)], weights=[20, 30, 50])
    assert mixture.num_classes == 3 and mixture.resolution == 8
    labels = torch.cat([mixture.sample(100, "cpu", seeded(i))[1] for i in range(10)])
    shares = torch.bincount(labels, minlength=3).float() / len(labels)
    assert torch.allclose(shares, torch.tensor([0.2, 0.3, 0.5]), atol=0.05)  # ~3 standard deviations
    images, labels = mixture.sample(50, "cpu", seeded(7))
    assert_batch(images, labels, 50, 8)
    assert torch.equal(images[:, 0, 0, 0], labels / 3)  # each image kept its own source's label
    assert not torch.equal(labels, labels.sort().values)  # shuffled, not grouped by source
    again, labels_again = mixture.sample(50, "cpu", seeded(7))
    assert torch.equal(again, images) and torch.equal(labels_again, labels)
    assert (MixtureSource([constant_source(0), constant_source(1)], [0, 1]).sample(20, "cpu")[1] == 1).all()


def test_mixture_checks_weights_and_shapes():
    with pytest.raises(CocktailError, match="2 mixture weights given for 3 sources"):
        MixtureSource([constant_source(k) for k in range(3)], [1, 1])
    with pytest.raises(CocktailError, match="non-negative"):
        MixtureSource([constant_source(0)], [-1])
    with pytest.raises(CocktailError, match="disagree"):
        MixtureSource([constant_source(0), ForeignSource(lambda *_: None, 16)])
    with pytest.raises(CocktailError, match="at least 1 image, not 0"):
        MixtureSource([constant_source(0), constant_source(1)]).sample(0, "cpu")


# -- load_source: models and errors ----------------------------------------------------------------


def test_load_source_from_a_model_folder_picks_a_class(tiny_networks, tmp_path):
    G3, D3 = make_conditional(tiny_networks[0], tiny_networks[1], 2)
    G3 = with_class_embeddings(G3)
    UnionModel(G3, D3, ["cat", "dog"]).save_pretrained(tmp_path / "m", write_card=False)
    source = load_source(f"{tmp_path / 'm'}#dog", 32, label=0, num_classes=2, truncation=0.5)
    assert isinstance(source, ModelSource) and source.class_index == 1 and source.truncation == 0.5
    images, labels = source.sample(3, "cpu", seeded(9))
    assert_batch(images, labels, 3, 32, label=0)
    direct = ModelSource(G3, label=0, num_classes=2, truncation=0.5, class_index=1)
    assert torch.equal(images, direct.sample(3, "cpu", seeded(9))[0])
    with pytest.raises(CocktailError, match=r"has 2 classes \(cat, dog\); pick one with"):
        load_source(str(tmp_path / "m"), 32)
    with pytest.raises(CocktailError, match="unknown class 'cow'"):
        load_source(f"{tmp_path / 'm'}#cow", 32)


def test_bad_specs_give_clear_errors(tmp_path, torchscript_file, monkeypatch):
    (tmp_path / "empty").mkdir()
    save(tmp_path / "broken" / "ok.png", (1, 2, 3))
    (tmp_path / "broken" / "bad.png").write_bytes(b"not a png at all")
    (tmp_path / "notes.txt").write_text("hello")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "state.pt")
    (tmp_path / "no_function.py").write_text("x = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cases = {
        str(tmp_path / "missing"): "missing: no such file or folder",
        str(tmp_path / "empty"): r"empty: no images \(PNG/JPEG/WebP\) found",
        str(tmp_path / "broken"): r"bad.png: cannot read image",
        str(tmp_path / "notes.txt"): "notes.txt: not a source",
        str(tmp_path / "state.pt"): "state.pt: not a TorchScript file",
        "no_such_module_xyz:sample": "cannot import module 'no_such_module_xyz'",
        "no_function:sample": "module 'no_function' has no function 'sample'",
        f"{tmp_path / 'empty'}#cat": "only applies to model folders",
    }
    for spec, message in cases.items():
        with pytest.raises(CocktailError, match=message):
            load_source(spec, 32)
    with pytest.raises(CocktailError, match="label 2 is out of range"):
        load_source(str(torchscript_file[0]), 32, label=2, num_classes=2)
    with pytest.raises(CocktailError, match="no class subfolders"):
        ImageFolderSource(tmp_path / "empty", 32, labels_from_subfolders=True)
    save(tmp_path / "mixed" / "cats" / "a.png", (1, 2, 3))
    save(tmp_path / "mixed" / "loose.png", (1, 2, 3))
    with pytest.raises(CocktailError, match="loose.png: image outside a class subfolder"):
        ImageFolderSource(tmp_path / "mixed", 32, labels_from_subfolders=True)
    (tmp_path / "mixed" / "loose.png").unlink()
    (tmp_path / "mixed" / "dogs").mkdir()
    with pytest.raises(CocktailError, match=r"dogs: no images \(PNG/JPEG/WebP\)"):
        ImageFolderSource(tmp_path / "mixed", 32, labels_from_subfolders=True)
