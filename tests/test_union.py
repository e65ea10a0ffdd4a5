"""The union model: conditional conversion, folder round trip, deterministic sampling, clear errors."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from training_helpers import TINY_D_KWARGS, TINY_G_KWARGS

from cocktail.card import write_model_card
from cocktail.errors import CocktailError
from cocktail.folder import check_class_name
from cocktail.merge import MergePlan, load_ingredient
from cocktail.merge.surgery import average_networks, make_conditional
from cocktail.networks import Discriminator, Generator
from cocktail.union import (
    UnionModel,
)


def one_hot(index, n, batch):
    return torch.nn.functional.one_hot(torch.full((batch,), index), n).float()


def test_make_conditional_keeps_every_class_drawing_the_same_images(tiny_networks):
    G, D = tiny_networks
    G3, D3 = make_conditional(G, D, 3)
    assert (G3.c_dim, D3.c_dim) == (3, 3)
    z = torch.randn(4, G.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for psi in (1.0, 0.7):
            before = G(z, None, truncation_psi=psi, noise_mode="const")
            for k in range(3):
                after = G3(z, one_hot(k, 3, 4), truncation_psi=psi, noise_mode="const")
                assert (after - before).abs().max().item() < 1e-5
        logits = D(before)
        for k in range(3):
            assert (D3(before, one_hot(k, 3, 4)) - logits).abs().max().item() < 1e-5


def test_make_conditional_leaves_the_class_inputs_trainable(tiny_networks):
    G3, D3 = make_conditional(*tiny_networks, 2)
    z = torch.randn(4, G3.z_dim)
    img = G3(z, one_hot(1, 2, 4), noise_mode="const")
    (img.square().mean() + D3(img, one_hot(1, 2, 4)).mean()).backward()
    assert G3.mapping.embed.weight.grad.abs().sum() > 0  # the class signal's way in, at full learning rate
    assert D3.mapping.embed.weight.grad.abs().sum() > 0


def test_make_conditional_refuses_conditional_input(tiny_networks):
    G3, D3 = make_conditional(*tiny_networks, 2)
    with pytest.raises(CocktailError, match="unconditional"):
        make_conditional(G3, D3, 4)


def test_save_and_load_round_trip_samples_identically(tiny_networks, tmp_path):
    G3, D3 = make_conditional(*tiny_networks, 3)
    model = UnionModel(G3, D3, ["cat", "dog", "car"], {"method": "cocktail"})
    model.save_pretrained(tmp_path / "m", write_card=False)
    index = json.loads((tmp_path / "m" / "union.json").read_text())
    assert index["class_names"] == ["cat", "dog", "car"] and index["provenance"]["method"] == "cocktail"
    loaded = UnionModel.from_pretrained(tmp_path / "m")
    assert loaded.class_names == ["cat", "dog", "car"]
    assert loaded.discriminator is not None
    for a, b in zip(model.generate("dog", [3, 4], truncation=0.7), loaded.generate(1, [3, 4], truncation=0.7),
                    strict=True):
        assert torch.equal(a, b)
    sampler_only = UnionModel.from_pretrained(tmp_path / "m", load_discriminator=False)
    assert sampler_only.discriminator is None


def test_a_loaded_model_saved_again_does_not_record_where_it_was_loaded_from(tiny_networks, tmp_path):
    UnionModel(*tiny_networks, ["cat"]).save_pretrained(tmp_path / "first", write_card=False)
    loaded = UnionModel.from_pretrained(tmp_path / "first")
    assert loaded.generator.config.get("_name_or_path")  # diffusers remembers the folder …
    loaded.save_pretrained(tmp_path / "second", write_card=False)
    for network in ("generator", "discriminator"):
        config = (tmp_path / "second" / network / "config.json").read_text()
        assert "_name_or_path" not in config and str(tmp_path) not in config  # … a saved folder must not
    again = UnionModel.from_pretrained(tmp_path / "second")
    assert torch.equal(again.generate(0, [1]), loaded.generate(0, [1]))


def test_sample_is_deterministic_per_seed_and_differs_across_seeds_and_classes(tiny_networks):
    G3, _ = make_conditional(*tiny_networks, 2)
    with torch.no_grad():  # give the classes different embeddings to draw from
        G3.mapping.embed.weight.normal_(generator=torch.Generator().manual_seed(0))
    model = UnionModel(G3, class_names=["a", "b"])
    first = model.sample("a", seeds=[7, 8], truncation=0.7)
    assert all(isinstance(im, Image.Image) and im.size == (32, 32) for im in first)
    again = model.sample("a", seeds=[8, 7], truncation=0.7)
    pixels = [np.asarray(im) for im in first]
    assert np.array_equal(pixels[0], np.asarray(again[1]))
    assert not np.array_equal(pixels[0], pixels[1])
    assert not np.array_equal(pixels[0], np.asarray(model.sample("b", seeds=[7], truncation=0.7)[0]))
    grid = model.sample_grid(seeds_per_class=3)
    assert grid.size == (3 * 34 + 2, 2 * 34 + 2)


def test_unknown_class_lists_the_classes(tiny_networks):
    model = UnionModel(tiny_networks[0], class_names=["faces"])
    with pytest.raises(CocktailError, match="unknown class 'cats'.*faces"):
        model.sample("cats")
    with pytest.raises(CocktailError, match="unknown class 3"):
        model.sample(3)


def test_class_names_must_match_the_generator(tiny_networks):
    with pytest.raises(CocktailError, match="2 class names given for a generator with 1 class"):
        UnionModel(tiny_networks[0], class_names=["a", "b"])


@pytest.mark.parametrize("name, reason", [
    ("../../x", "contains a path separator"), ("a\\b", "contains a path separator"), ("..", "contains '..'"),
    ("", "is empty"), (" cat", "starts or ends with a space"), ("x" * 101, "is longer than 100 bytes"),
    ("é" * 51, "is longer than 100 bytes"), ("cat\n", "unprintable"), ("a\x00b", "unprintable"),
    (7, "is not a string"), (None, "is not a string"),
])
def test_unusable_class_names_are_refused_wherever_they_enter(tiny_networks, tmp_path, name, reason):
    with pytest.raises(CocktailError, match=reason):
        UnionModel(tiny_networks[0], class_names=[name])
    folder = UnionModel(*tiny_networks, ["cat"]).save_pretrained(tmp_path / "m", write_card=False)
    index = json.loads((folder / "union.json").read_text())
    (folder / "union.json").write_text(json.dumps({**index, "class_names": [name]}))
    with pytest.raises(CocktailError, match=rf"^{folder / 'union.json'}: class name .*{reason}") as info:
        UnionModel.from_pretrained(folder)  # e.g. someone's Hub repo: the error names the model
    assert "\n" not in str(info.value)
    with pytest.raises(CocktailError, match=rf"{folder / 'union.json'}: class name"):
        load_ingredient(str(folder))
    with pytest.raises(CocktailError, match=rf"^{folder / 'union.json'}: class name"):
        write_model_card(folder)


def test_usable_class_names_pass(tiny_networks):
    for name in ("cat", "FFHQ faces", "café", "n°5 (v2.1)", "ü" * 50, "a.b"):
        assert check_class_name(name) == name
    assert UnionModel(tiny_networks[0], class_names=["FFHQ faces"]).class_names == ["FFHQ faces"]


def test_a_recipe_name_that_escapes_the_output_folder_is_refused_before_training(tiny_networks, tmp_path):
    UnionModel(*tiny_networks, ["cat"]).save_pretrained(tmp_path / "cat", write_card=False)
    UnionModel(*tiny_networks, ["dog"]).save_pretrained(tmp_path / "dog", write_card=False)
    ingredients = [load_ingredient(str(tmp_path / "cat")), load_ingredient(str(tmp_path / "dog"), "../../x")]
    with pytest.raises(CocktailError, match=rf"source {tmp_path / 'dog'}: class name '../../x' contains a path"):
        MergePlan(ingredients).validate()


def test_average_networks_averages_parameters_and_buffers(tiny_networks):
    G, _ = tiny_networks
    other = Generator(**TINY_G_KWARGS)
    with torch.no_grad():
        other.mapping.w_avg.fill_(1.0)
    mean = average_networks([G, other])
    for name, value in mean.state_dict().items():
        expected = (G.state_dict()[name] + other.state_dict()[name]) / 2
        assert torch.allclose(value, expected), name
    with pytest.raises(CocktailError, match="does not share the architecture"):
        average_networks([G, Generator(**{**TINY_G_KWARGS, "channel_max": 32})])
    quarter = average_networks([G, other], weights=[0.75, 0.25])  # a quarter of the way from G to other
    for name, value in quarter.state_dict().items():
        expected = 0.75 * G.state_dict()[name] + 0.25 * other.state_dict()[name]
        assert torch.allclose(value, expected), name
    with pytest.raises(CocktailError, match="sum to 1"):
        average_networks([G, other], weights=[0.5, 0.6])


def test_average_networks_keeps_the_named_parts_of_one_network(tiny_networks):
    G, _ = tiny_networks
    other = Generator(**TINY_G_KWARGS)
    mean = average_networks([G, other], keep=["mapping."], keep_from=1)
    for name, value in mean.state_dict().items():
        expected = other.state_dict()[name] if name.startswith("mapping.") else \
            (G.state_dict()[name] + other.state_dict()[name]) / 2
        assert torch.allclose(value, expected), name
    assert not torch.allclose(mean.state_dict()["mapping.fc0.weight"], G.state_dict()["mapping.fc0.weight"])


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda f: (f / "union.json").unlink(), "no union.json"),
        (lambda f: (f / "union.json").write_text("{not json"), "union.json: not valid JSON"),
        (lambda f: (f / "union.json").write_text('{"format": "other"}'), "not a GAN Cocktail index"),
        (lambda f: (f / "generator" / "config.json").unlink(), "no generator/config.json"),
        (lambda f: (f / "generator" / "diffusion_pytorch_model.safetensors").write_bytes(b"garbage"),
         "generator: cannot load the generator"),
        (lambda f: (f / "generator" / "config.json").write_text(
            json.dumps({**json.loads((f / "generator" / "config.json").read_text()), "channel_max": 32})),
         "generator: cannot load the generator"),
        (lambda f: (f / "union.json").write_text(json.dumps(
            {"format": "gan-cocktail", "format_version": 1, "class_names": ["a", "b"]})),
         "union.json: 2 class names"),
    ],
    ids=["no-index", "bad-json", "foreign-index", "no-config", "corrupt-weights", "config-mismatch",
         "class-count"],
)
def test_broken_folders_give_one_line_errors(tiny_networks, tmp_path, damage, message):
    folder = UnionModel(*tiny_networks, ["only"]).save_pretrained(tmp_path / "m", write_card=False)
    damage(folder)
    with pytest.raises(CocktailError, match=message) as info:
        UnionModel.from_pretrained(folder)
    assert "\n" not in str(info.value)


def test_example_models_load_and_unknown_example_is_explained():
    model = UnionModel.from_pretrained("example:union")
    assert model.num_classes >= 2
    with pytest.raises(CocktailError, match="unknown example model 'example:nope'.*example:union"):
        UnionModel.from_pretrained("example:nope")


def test_discriminator_must_match_generator_classes(tiny_networks):
    with pytest.raises(CocktailError, match="c_dim"):
        UnionModel(tiny_networks[0], Discriminator(**TINY_D_KWARGS, c_dim=2))
