"""The first level's start picture: content, counter-based noise, gray, or a picture file."""

import dask.array as da
import numpy as np
import pytest
from PIL import Image

from daskstyle.controls.start import GRAY, INITS, check_init, gray, noise, start_image
from daskstyle.core.errors import InputError


@pytest.fixture
def content():
    rng = np.random.default_rng(0)
    return da.from_array(rng.random((90, 130, 3), np.float32) * 255, chunks=(32, 48, 3))


@pytest.fixture
def picture(tmp_path):
    """A 60 x 80 PNG of gradients, and its pixels."""
    y, x = np.mgrid[0:60, 0:80]
    pixels = np.stack([3 * x, 4 * y, (x * y) % 256], axis=2).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "start.png")
    return tmp_path / "start.png", pixels


def test_init_names():
    assert INITS == ("content", "noise", "gray")


@pytest.mark.parametrize("chunks", [64, 128, (50, 300), ((100, 100), (7, 293))])
def test_noise_does_not_depend_on_chunking(chunks):
    whole = noise((200, 300), 7, (200, 300))
    assert whole.numblocks == (1, 1, 1)
    chunked = noise((200, 300), 7, chunks)
    np.testing.assert_array_equal(chunked.compute(), whole.compute())


def test_noise_depends_on_position_only():
    small = noise((200, 300), 11, 64).compute()
    larger = noise((333, 517), 11, (100, 90)).compute()
    np.testing.assert_array_equal(larger[:200, :300], small)


def test_noise_is_uniform_on_0_255_and_uncorrelated():
    values = noise((300, 400), 3, 128).compute()
    assert values.dtype == np.float32 and values.shape == (300, 400, 3)
    assert values.min() >= 0 and values.max() <= 255
    assert values.mean() == pytest.approx(127.5, abs=1.0)
    assert values.std() == pytest.approx(255 / np.sqrt(12), abs=1.0)
    counts = np.histogram(values, bins=16, range=(0, 255))[0]
    assert np.abs(counts / counts.mean() - 1).max() < 0.05
    neighbours = [
        (values[:, :-1, 0], values[:, 1:, 0]),  # across
        (values[:-1, :, 1], values[1:, :, 1]),  # down
        (values[..., 0], values[..., 2]),  # channels
    ]
    for a, b in neighbours:
        assert abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < 0.02


def test_different_seeds_give_different_noise():
    first, second = noise((100, 100), 0, 50).compute(), noise((100, 100), 1, 50).compute()
    assert (first == second).mean() < 0.001
    assert abs(np.corrcoef(first.ravel(), second.ravel())[0, 1]) < 0.02
    assert np.isfinite(noise((10, 10), -5, 10).compute()).all()  # any int is a seed


def test_gray_is_flat_128():
    start = gray((70, 90), 32)
    assert start.dtype == np.float32 and start.chunks == ((32, 32, 6), (32, 32, 26), (3,))
    np.testing.assert_array_equal(start.compute(), np.full((70, 90, 3), 128, np.float32))
    assert GRAY == 128


@pytest.mark.parametrize("shape", [(0, 5), (5,), (3, 4, 3)])
def test_bad_shapes_are_refused(shape):
    with pytest.raises(InputError, match="shape"):
        noise(shape, 0, 8)


@pytest.mark.parametrize("init", ["content", "noise", "gray", "picture"])
def test_start_image_takes_the_contents_shape_and_chunks(content, picture, init):
    start = start_image(picture[0] if init == "picture" else init, content, seed=5)
    assert start.shape == content.shape and start.chunks == content.chunks
    assert start.dtype == np.float32


def test_start_image_values(content, picture):
    assert start_image("content", content) is content
    np.testing.assert_array_equal(
        start_image("noise", content, seed=9).compute(), noise((90, 130), 9, 130).compute()
    )
    np.testing.assert_array_equal(start_image("gray", content).compute(), 128)
    path, pixels = picture
    expected = np.stack(  # Pillow's float bilinear resize, channel by channel
        [
            np.asarray(
                Image.fromarray(pixels[..., c].astype(np.float32)).resize((130, 90), Image.BILINEAR)
            )
            for c in range(3)
        ],
        axis=2,
    )
    np.testing.assert_allclose(start_image(str(path), content).compute(), expected, atol=1e-3)


def test_check_init_accepts_names_and_pictures(picture):
    for init in (*INITS, picture[0], str(picture[0])):
        assert check_init(init) is None


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p / "missing.png", "no such picture, and not one of content, noise, gray"),
        (lambda p: p / "nosie", "no such picture"),
        (lambda p: (p / "text.png").write_text("not a picture") and p / "text.png", "not an image"),
        (lambda p: p, "is not a file"),
    ],
    ids=["missing", "typo", "not-a-picture", "directory"],
)
def test_check_init_refuses_in_one_line(tmp_path, make, message):
    init = make(tmp_path)
    with pytest.raises(InputError, match=message) as info:
        check_init(init)
    assert "\n" not in str(info.value) and str(init) in str(info.value)
