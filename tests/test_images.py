"""Pictures in and out: listing and reading image files, resizing, and back to 8 bits."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from cocktail.errors import CocktailError
from cocktail.images import image_files, read_image, resize_images, to_pil, to_uint8


def seeded(seed):
    return torch.Generator().manual_seed(seed)


def test_image_files_are_sorted_and_skip_hidden_ones(tmp_path):
    for name in ("b.PNG", "a.jpg", "notes.txt", ".hidden.png", ".cache/c.png", "sub/d.webp"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    assert [p.relative_to(tmp_path).as_posix() for p in image_files(tmp_path)] == ["a.jpg", "b.PNG", "sub/d.webp"]
    assert [p.name for p in image_files(tmp_path, recursive=False)] == ["a.jpg", "b.PNG"]


def test_read_image_keeps_grey_as_one_channel_and_drops_alpha(tmp_path):
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    rgba = np.random.default_rng(0).integers(0, 256, (3, 4, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    assert torch.equal(read_image(tmp_path / "grey.png"), torch.from_numpy(grey)[None])
    assert torch.equal(read_image(tmp_path / "rgba.png"), torch.from_numpy(rgba[..., :3]).permute(2, 0, 1))
    (tmp_path / "broken.png").write_bytes(b"not a picture")
    with pytest.raises(CocktailError, match="broken.png: cannot read image"):
        read_image(tmp_path / "broken.png")


def test_to_uint8_rounds_and_clamps_like_a_saved_png():
    images = torch.tensor([-2.0, -1.0, -0.5, 0.0, 0.999, 1.5]).view(1, 1, 2, 3)
    assert to_uint8(images).flatten().tolist() == [0, 0, 64, 128, 255, 255]
    assert np.asarray(to_pil(images)[0]).tolist() == [[0, 0, 64], [128, 255, 255]]


def test_resize_images_down_up_dtypes_channels_and_crop():
    gen = seeded(0)
    pixels = torch.randint(0, 256, [2, 3, 64, 64], dtype=torch.uint8, generator=gen)
    as_float = pixels.float() / 127.5 - 1
    down = resize_images(pixels, 32)
    assert torch.allclose(down, F.avg_pool2d(as_float, 2), atol=1e-6)
    assert torch.allclose(down, resize_images(as_float, 32))
    assert torch.equal(resize_images(pixels, 64), as_float)
    odd = resize_images(as_float, 24)  # non-integer factor: antialiased, stays in range and near the mean
    assert odd.shape == (2, 3, 24, 24) and abs(odd.mean() - as_float.mean()) < 0.02
    ramp = torch.linspace(-1, 1, 16).expand(1, 3, 16, 16)
    up = resize_images(ramp, 32)
    assert up.shape == (1, 3, 32, 32) and len(up[0, 0, 0].unique()) == 32  # bilinear, not blocky
    grey = resize_images(pixels[:, :1], 32)
    assert grey.shape == (2, 3, 32, 32) and torch.equal(grey[:, 0], grey[:, 2])
    rgba = torch.cat([pixels, torch.zeros_like(pixels[:, :1])], 1)
    assert torch.equal(resize_images(rgba, 32), down)
    assert resize_images(pixels, 32, channels=1).shape == (2, 1, 32, 32)
    centre = as_float[:1, :, :32, :32]
    wide = torch.cat([torch.full([1, 3, 32, 16], -1.0), centre, torch.ones(1, 3, 32, 16)], 3)
    assert torch.equal(resize_images(wide, 32), centre)
    assert resize_images(torch.full([1, 3, 8, 8], 3.0), 8).max() == 1
    with pytest.raises(CocktailError, match="expected images"):
        resize_images(torch.zeros(3, 8, 8), 8)
    with pytest.raises(CocktailError, match="uint8 or float"):
        resize_images(torch.zeros(1, 3, 8, 8, dtype=torch.int32), 8)
