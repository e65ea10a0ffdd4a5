"""Growing a union (``scripts/merge.py --extend UNION NEW_SOURCE``): the union is the root, its classes are drawn
from the union itself, the new source becomes one more class; bad input is refused before any training."""

import pytest
import torch
import yaml
from script_loader import load_script
from training_helpers import COLOURS, FAST, TINY_D_KWARGS, TINY_G_KWARGS, colour_source, mean_colour, tiny_pair

from cocktail.card import model_card
from cocktail.errors import CocktailError
from cocktail.merge import run_merge
from cocktail.merge.surgery import add_classes, make_conditional
from cocktail.networks import Discriminator, Generator
from cocktail.recipe import build_plan, resolve_recipe
from cocktail.union import UnionModel

# FAST's learning rate (0.02) does not let the tiny GAN settle: where the old classes end up then depends on
# the CPU and thread count (class 0 moved 0.61 of a 0.55 bound at one thread on one machine). At 0.005 it settles.
TRAINING = {**{key: value for key, value in FAST.items() if key != "progress"}, "g_lr": 0.005, "d_lr": 0.005}


def test_add_classes_keeps_the_old_classes_exactly_and_starts_the_new_one_between_them():
    G, D = tiny_pair(seed=3, c_dim=2)
    state = torch.random.get_rng_state()
    G3, D3 = add_classes(G, D, 3)
    assert torch.equal(torch.random.get_rng_state(), state)  # the merge's own random stream is untouched
    z = torch.randn([4, G.z_dim], generator=torch.Generator().manual_seed(0))
    eye2, eye3 = torch.eye(2), torch.eye(3)
    with torch.no_grad():
        for c in range(2):
            old_images = G(z, eye2[[c] * 4], noise_mode="const")
            new_images = G3(z, eye3[[c] * 4], noise_mode="const")
            torch.testing.assert_close(new_images, old_images, rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(D3(old_images, eye3[[c] * 4]), D(old_images, eye2[[c] * 4]),
                                       rtol=1e-4, atol=1e-5)
        embeddings = G3.mapping.embed(eye3) - G3.mapping.embed.bias * G3.mapping.embed.bias_gain
        torch.testing.assert_close(embeddings[2], embeddings[:2].mean(0))
    with pytest.raises(CocktailError, match="expects conditional networks"):
        add_classes(*tiny_pair(seed=3), 3)


@pytest.fixture(scope="module")
def red_green(tmp_path_factory):
    """A 2-class union (red, green) merged from colour sources, and a blue source to add to it."""
    folder = tmp_path_factory.mktemp("extend")
    red, green, blue = (colour_source(name, seed, folder / "sources") for seed, name in enumerate(COLOURS))
    recipe = resolve_recipe({"sources": [str(red), str(green)], "method": "transfer", "merge_kimg": 3.2,
                             "training": TRAINING})
    run_merge(build_plan(recipe), folder / "red-green", log=lambda _: None)
    return folder / "red-green" / "union", blue


def extend(union_dir, source, output, *flags):
    recipe = output.parent / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"training": TRAINING}))
    assert load_script("merge").main(["--config", str(recipe), "--extend", str(union_dir), str(source), *flags,
                                      "--output_dir", str(output)]) == 0
    return UnionModel.from_pretrained(output / "union")


@pytest.mark.slow
def test_extend_adds_a_class_and_keeps_the_old_ones(red_green, tmp_path):
    """The default method: each old class stays where the union drew it, and every class (old and new) lies at
    most half as far from its own source's colour as from any other source's."""
    union_dir, blue = red_green
    before = UnionModel.from_pretrained(union_dir)
    after = extend(union_dir, blue, tmp_path / "out", "--merge_kimg", "3.2")
    assert after.class_names == ["red", "green", "blue"] and after.generator.c_dim == 3
    assert set(after.provenance["kimg"]) == {"transfer"}
    folder = union_dir.parent.parent / "sources"
    sources = [mean_colour(UnionModel.from_pretrained(folder / name), 0) for name in COLOURS]
    gap = min((a - b).norm().item() for i, a in enumerate(sources) for b in sources[i + 1:])
    for c in range(2):
        moved = (mean_colour(after, c) - mean_colour(before, c)).norm().item()
        assert moved < 0.25 * gap, f"old class {c} moved {moved:.2f} (gap between sources {gap:.2f})"
    for c in range(3):
        distances = [(mean_colour(after, c) - colour).norm().item() for colour in sources]
        assert distances[c] < 0.5 * min(d for i, d in enumerate(distances) if i != c), f"class {c}: {distances}"


@pytest.mark.slow
def test_extend_by_cocktail_roots_only_the_new_source_and_records_the_chain(red_green, tmp_path):
    union_dir, blue = red_green
    before = UnionModel.from_pretrained(union_dir)
    after = extend(union_dir, blue, tmp_path / "out", "--method", "cocktail", "--root_kimg", "0.4",
                   "--merge_kimg", "0.4")
    assert after.class_names == ["red", "green", "blue"]
    assert set(after.provenance["kimg"]) == {"root-blue", "merge"}  # the union's classes are not re-rooted
    (rooting,) = (tmp_path / "out" / "stages" / "cocktail").glob("root-blue-*")
    inputs = yaml.safe_load((rooting / "inputs.json").read_text())
    assert inputs["conditional_rooting"] == {"classes": 3, "label": 2}  # rooted into the union as its new class
    # The chain: which union, which source, which recipe; and the card shows it.
    extends = after.provenance["extends"]
    assert extends["spec"] == str(union_dir) and extends["classes"] == ["red", "green"]
    assert extends["provenance"]["sources"] == before.provenance["sources"]
    assert [s["spec"] for s in after.provenance["sources"]] == [f"{union_dir}#red", f"{union_dir}#green", str(blue)]
    assert after.provenance["recipe"]["method"] == "cocktail"
    card = model_card(tmp_path / "out" / "union")
    assert f"- `{union_dir}` (classes red, green, made with `transfer` from " in card


def save(folder, generator_kwargs, discriminator_kwargs, class_names, conditional_classes=0):
    torch.manual_seed(0)
    G, D = Generator(**generator_kwargs), Discriminator(**discriminator_kwargs)
    if conditional_classes:
        G, D = make_conditional(G, D, conditional_classes)
    return UnionModel(G, D, class_names).save_pretrained(folder, write_card=False)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("extend-inputs")
    return {
        "union": save(folder / "union", TINY_G_KWARGS, TINY_D_KWARGS, ["red", "green"], conditional_classes=2),
        "single": save(folder / "single", TINY_G_KWARGS, TINY_D_KWARGS, ["blue"]),
        "small": save(folder / "small", {**TINY_G_KWARGS, "img_resolution": 16},
                      {**TINY_D_KWARGS, "img_resolution": 16}, ["tiny"]),
        "pair": save(folder / "pair", TINY_G_KWARGS, TINY_D_KWARGS, ["cat", "dog"], conditional_classes=2),
    }


@pytest.mark.parametrize("layer, message", [
    ({"extend": "{single}", "sources": ["{union}#red"]}, r"a single-domain model, not a union"),
    ({"extend": "{union}#red", "sources": ["{single}"]}, r"a union is extended as a whole; drop '#red'"),
    ({"extend": "{union}", "sources": ["{small}"]}, r"draws 16×16 px .* the union 32×32 px"),
    ({"extend": "{union}", "sources": ["{single}"], "names": ["green"]}, r"class 'green' is already in the union"),
    ({"extend": "{union}", "sources": ["{pair}"]}, r"has 2 classes \(cat, dog\); pick one with '.*#<class>'"),
    ({"extend": "{union}", "sources": ["{single}"], "method": "average"}, r"method 'average' cannot extend a union"),
    ({"extend": "{union}", "sources": ["{single}"], "method": "scratch"}, r"method 'scratch' cannot extend a union"),
    ({"extend": "{union}", "sources": ["{single}"], "root": "blue"}, r"root does not apply to --extend"),
    ({"extend": "{union}"}, r"needs at least one new source"),
    ({"extend": "torch.nn:Identity", "sources": ["{single}"]}, r"not a GAN Cocktail / StyleGAN2 model"),
    ({"sources": ["{union}#red", "{single}"]}, r"conditional; the root must be an unconditional .* --extend UNION"),
])
def test_bad_extensions_are_refused_before_training(models, layer, message):
    layer = {key: [v.format(**models) for v in value] if isinstance(value, list) else value.format(**models)
             for key, value in layer.items()}
    with pytest.raises(CocktailError, match=message):
        build_plan(resolve_recipe(layer))
