"""scripts/project.py: an image in, the reconstruction, every class, a grid and the latent out; bad input, one line."""

import json

import numpy as np
import pytest
from PIL import Image
from script_loader import load_script

from cocktail.assets import DEFAULT_UNION
from cocktail.errors import run_script
from cocktail.union import UnionModel


@pytest.fixture(scope="module")
def script():
    return load_script("project")


@pytest.fixture(scope="module")
def sneaker(tmp_path_factory):
    """A sneaker the shipped union drew, saved as an 8-bit PNG like any upload."""
    path = tmp_path_factory.mktemp("images") / "my sneaker.png"
    UnionModel.from_pretrained(DEFAULT_UNION).sample("sneaker", [7], truncation=0.7)[0].save(path)
    return path


def test_it_writes_the_reconstruction_every_class_a_grid_and_the_latent(script, sneaker, tmp_path, capsys):
    out = tmp_path / "out"
    assert script.main([str(sneaker), "--class", "sneaker", "--steps", "30", "--distance", "mse",
                        "--direction", "1", "--output_dir", str(out), "--no_progress"]) == 0
    names = ["trouser", "sneaker", "bag"]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["target.png", "reconstruction.png", "grid.png", "direction-1.png", "latent.npz", "projection.json",
         *[f"class-{n}.png" for n in names]])
    record = json.loads((out / "projection.json").read_text())
    assert record["grid_columns"] == ["target", *names] and len(record["history"]) == 30
    assert record["psnr_db"] > 25  # an image the union can draw
    assert record["history"][-1]["distance"] < record["history"][0]["distance"] / 5
    with Image.open(out / "grid.png") as grid:  # four 32 px images enlarged 4× in one row
        assert grid.size == (2 + 4 * (128 + 2), 2 + 128 + 2)
    with Image.open(out / "direction-1.png") as strip:
        assert strip.size == (2 + 5 * (128 + 2), 2 + 3 * (128 + 2))
    with Image.open(out / "class-sneaker.png") as own, Image.open(out / "reconstruction.png") as reconstruction:
        assert np.abs(np.asarray(own, np.int16) - np.asarray(reconstruction, np.int16)).max() <= 1
    with np.load(out / "latent.npz") as latent:
        assert latent["ws"].shape == (8, 32) and str(latent["class_name"]) == "sneaker"
    assert "PSNR" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--class", "shoe"], "unknown class 'shoe'; this model has: trouser, sneaker, bag"),
    (["--class", "bag", "--steps", "0"], "--steps must be at least 1"),
    (["--class", "bag", "--direction", "10"], "--direction must be between 0 and 9"),
    (["--class", "bag", "--model", "example:nope"], "unknown example model"),
])
def test_bad_arguments_get_a_one_line_error(script, sneaker, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        run_script(lambda: script.main([str(sneaker), "--distance", "mse", "--no_progress", *args]))
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("error: ") and message in err and err.count("\n") == 1


@pytest.mark.parametrize("content, message", [
    (None, "missing.png: no such file"),
    (b"GIF89a but not really", "upload.png: not an image this program can read"),
])
def test_bad_images_get_a_one_line_error(script, tmp_path, capsys, content, message):
    path = tmp_path / ("missing.png" if content is None else "upload.png")
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SystemExit) as exit_info:
        run_script(lambda: script.main([str(path), "--class", "bag", "--distance", "mse", "--no_progress"]))
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("error: ") and message in err and err.count("\n") == 1


def test_help_says_what_it_writes(script, capsys):
    with pytest.raises(SystemExit) as exit_info:
        script.parse_args(["--help"])
    text = capsys.readouterr().out
    assert exit_info.value.code == 0
    assert all(word in text for word in ("--class", "grid.png", "latent.npz", "--space", "inception"))
