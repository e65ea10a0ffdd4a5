"""scripts/prepare_data.py fashion-mnist: IDX files → one folder of 32 px RGB PNGs per class."""

import gzip
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from script_loader import load_script


@pytest.fixture(scope="module")
def prepare_data():
    return load_script("prepare_data")


def write_idx(path: Path, array: np.ndarray) -> None:
    """The IDX format: two zero bytes, the type code (0x08: uint8), the rank, big-endian sizes, then the data."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def idx_files(tmp_path):
    """A tiny Fashion-MNIST: 5 training and 3 test images, and their labels."""
    rng = np.random.default_rng(0)
    source = tmp_path / "idx"
    source.mkdir()
    images = {"train": rng.integers(0, 256, (5, 28, 28)), "t10k": rng.integers(0, 256, (3, 28, 28))}
    labels = {"train": np.array([1, 7, 1, 0, 8]), "t10k": np.array([8, 1, 3])}  # 1 trouser, 7 sneaker, 8 bag
    for split in images:
        write_idx(source / f"{split}-images-idx3-ubyte.gz", images[split])
        write_idx(source / f"{split}-labels-idx1-ubyte.gz", labels[split])
    return source, images


def test_fashion_mnist_export_pads_and_splits_by_class(prepare_data, idx_files, tmp_path):
    source, images = idx_files
    counts = prepare_data.export_fashion_mnist(source, tmp_path / "out", ["trouser", "bag"])

    assert counts == {"trouser": 3, "bag": 2}
    trousers = sorted((tmp_path / "out" / "trouser").glob("*.png"))
    first = np.asarray(Image.open(trousers[0]))
    assert first.shape == (32, 32, 3) and (first[..., 0] == first[..., 2]).all()
    np.testing.assert_array_equal(first[2:30, 2:30, 0], images["train"][0])  # the original, centred
    assert first[:2].max() == 0 and first[:, 30:].max() == 0  # on black, like its own background
    last = np.asarray(Image.open(trousers[-1]))[2:30, 2:30, 0]
    np.testing.assert_array_equal(last, images["t10k"][1])  # the test split follows the training split


def test_the_test_split_alone_holds_only_the_test_images(prepare_data, idx_files, tmp_path):
    source, images = idx_files
    counts = prepare_data.export_fashion_mnist(source, tmp_path / "test", ["trouser", "bag"], split="test")
    assert counts == {"trouser": 1, "bag": 1}
    trouser = np.asarray(Image.open(tmp_path / "test" / "trouser" / "00000.png"))[2:30, 2:30, 0]
    np.testing.assert_array_equal(trouser, images["t10k"][1])
    assert prepare_data.export_fashion_mnist(source, tmp_path / "train", ["trouser"], split="train") == {"trouser": 2}
