"""Colour controls: YCbCr, luminance-only transfer, the content's chroma, colour matching."""

import dask
import dask.array as da
import numpy as np
import pytest
from PIL import Image

from daskstyle.controls.colors import (
    COLORS,
    luminance_only,
    match_colors,
    to_rgb,
    to_ycbcr,
    with_chroma,
)
from daskstyle.core.errors import InputError

MIX = np.array([[1.0, 0.3, 0.1], [0.2, 0.8, 0.4], [0.1, 0.5, 0.6]])  # correlated channels


def coloured(shape, seed, mix=MIX, scale=150.0, offset=20.0):
    """A float64 picture whose channels are correlated, as in real pictures."""
    return np.random.default_rng(seed).random((*shape, 3)) @ mix.T * scale + offset


def smooth_picture(height, width):
    """A coloured picture of gradients: red across, green down, blue in rings."""
    y, x = np.mgrid[0:height, 0:width] / np.array([height, width])[:, None, None]
    blue = 0.5 + 0.4 * np.sin(12 * np.hypot(y - 0.5, x - 0.5))
    return np.stack([40 + 170 * x, 40 + 170 * y, 255 * blue], axis=2)


def luma(rgb):
    return rgb @ np.array([0.299, 0.587, 0.114])


def moments(picture):
    pixels = np.asarray(picture, np.float64).reshape(-1, 3)
    return pixels.mean(axis=0), np.cov(pixels.T, bias=True)


def counting_scheduler(calls):
    """A scheduler that appends to ``calls`` each time it is asked to compute."""

    def get(dsk, keys, **kwargs):
        calls.append(1)
        return dask.get(dsk, keys, **kwargs)

    return get


def test_colors_names():
    assert COLORS == ("style", "content", "match")


def test_ycbcr_of_known_colours():
    rgb = np.array([[[255, 255, 255], [0, 0, 0], [255, 0, 0], [0, 0, 255]]], np.float64)
    expected = [
        [255, 128, 128],
        [0, 128, 128],
        [76.245, 128 - 43.02768, 255.5],
        [29.07, 255.5, 128 - 20.73456],
    ]
    np.testing.assert_allclose(to_ycbcr(rgb).compute()[0], expected, atol=1e-9)


def test_ycbcr_agrees_with_pillow():
    rgb = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    pillow = np.asarray(Image.fromarray(rgb).convert("YCbCr"), np.float64)
    ours = to_ycbcr(da.from_array(rgb.astype(np.float32), chunks=(16, 16, 3))).compute()
    assert np.abs(ours - pillow).max() < 1.05  # Pillow truncates, in fixed point


@pytest.mark.parametrize("dtype, atol", [(np.float64, 1e-10), (np.float32, 1e-4)])
def test_ycbcr_round_trip(dtype, atol):
    rgb = coloured((45, 70), 1).astype(dtype)
    back = to_rgb(to_ycbcr(da.from_array(rgb, chunks=(20, 30, 3))))
    assert back.dtype == dtype and back.chunks == ((20, 20, 5), (30, 30, 10), (3,))
    np.testing.assert_allclose(back.compute(), rgb, atol=atol, rtol=0)


def test_luminance_only_matches_the_styles_luminance_to_the_contents():
    content = coloured((60, 90), 2)
    styles = [coloured((50, 40), 3, scale=60), coloured((70, 110), 4, mix=MIX[::-1])]
    chunked = [da.from_array(s, chunks=(16, 24, 3)) for s in styles]
    count = []
    with dask.config.set(scheduler=counting_scheduler(count)):
        gray_content, gray_styles = luminance_only(da.from_array(content, chunks=17), chunked)
    assert len(count) == 1  # all statistics in one compute
    content_y = luma(content)
    np.testing.assert_allclose(gray_content.compute(), np.repeat(content_y[..., None], 3, 2))
    for style, gray in zip(styles, gray_styles):
        gray = gray.compute()
        assert gray.shape == style.shape
        np.testing.assert_array_equal(gray[..., 0], gray[..., 2])
        assert gray[..., 0].mean() == pytest.approx(content_y.mean(), abs=1e-9)
        assert gray[..., 0].std() == pytest.approx(content_y.std(), abs=1e-9)
        y = luma(style)  # an affine map of the style's own luminance
        expected = (y - y.mean()) * content_y.std() / y.std() + content_y.mean()
        np.testing.assert_allclose(gray[..., 1], expected, atol=1e-9)
    whole_content, whole_styles = luminance_only(content, styles)
    np.testing.assert_allclose(whole_styles[1].compute(), gray_styles[1].compute(), atol=1e-9)
    np.testing.assert_allclose(whole_content.compute(), gray_content.compute(), atol=1e-9)


def test_luminance_only_flat_style_is_safe():
    content = coloured((30, 40), 5)
    _, (gray,) = luminance_only(content, [np.full((20, 20, 3), 90.0)])
    np.testing.assert_allclose(gray.compute(), luma(content).mean())


def test_with_chroma_keeps_the_canvas_luminance_and_the_content_chroma():
    content = smooth_picture(96, 130)
    texture = 35 * np.sin(np.arange(130) / 3)[None, :] * np.cos(np.arange(96) / 5)[:, None]
    canvas = content[..., ::-1] + texture[..., None]  # other colours, other detail
    result = with_chroma(
        da.from_array(canvas.astype(np.float32), chunks=(40, 50, 3)),
        da.from_array(content.astype(np.float32), chunks=(32, 64, 3)),
    )
    assert result.dtype == np.float32 and result.chunks[:2] == ((40, 40, 16), (50, 50, 30))
    out = result.compute()
    np.testing.assert_allclose(luma(out), luma(canvas), atol=1e-3)
    written = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    chroma = np.asarray(Image.fromarray(written).convert("YCbCr"), np.float64)[..., 1:]
    wanted = np.asarray(Image.fromarray(content.astype(np.uint8)).convert("YCbCr"))[..., 1:]
    assert np.abs(chroma - wanted).mean(axis=(0, 1)).max() < 2
    whole = with_chroma(canvas.astype(np.float32), content.astype(np.float32)).compute()
    np.testing.assert_allclose(out, whole, atol=1e-4)


def test_with_chroma_needs_one_shape():
    with pytest.raises(InputError, match="must have one shape"):
        with_chroma(np.zeros((4, 5, 3)), np.zeros((5, 4, 3)))


def test_match_colors_gives_the_contents_mean_and_covariance():
    style, content = coloured((70, 110), 6), coloured((90, 60), 7, mix=MIX[::-1], offset=50)
    count = []
    with dask.config.set(scheduler=counting_scheduler(count)):
        matched = match_colors(
            da.from_array(style, chunks=(25, 40, 3)), da.from_array(content, chunks=(33, 17, 3))
        )
    assert len(count) == 1  # both pictures' statistics in one compute
    assert matched.shape == style.shape and matched.chunks[:2] == ((25, 25, 20), (40, 40, 30))
    matched = matched.compute()
    (mean, cov), (content_mean, content_cov) = moments(matched), moments(content)
    np.testing.assert_allclose(mean, content_mean, atol=1e-6, rtol=0)
    np.testing.assert_allclose(cov, content_cov, atol=1e-6, rtol=0)
    np.testing.assert_allclose(match_colors(style, content).compute(), matched, atol=1e-9)


def test_match_colors_is_the_symmetric_square_root_map():
    style, content = coloured((40, 30), 8), coloured((20, 50), 9, mix=MIX.T)
    (mu_s, cov_s), (mu_c, cov_c) = moments(style), moments(content)
    w_s, v_s = np.linalg.eigh(cov_s)
    w_c, v_c = np.linalg.eigh(cov_c)
    a = (v_c * np.sqrt(w_c)) @ v_c.T @ (v_s / np.sqrt(w_s)) @ v_s.T
    np.testing.assert_allclose(
        match_colors(style, content).compute(), (style - mu_s) @ a.T + mu_c, atol=1e-8
    )


def test_match_colors_keeps_the_dtype():
    style = coloured((30, 20), 10).astype(np.float32)
    matched = match_colors(da.from_array(style, chunks=8), coloured((25, 25), 11))
    assert matched.dtype == np.float32 and matched.compute().dtype == np.float32


@pytest.mark.parametrize(
    "style",
    [
        np.repeat(coloured((40, 50), 12)[..., :1], 3, axis=2),  # gray: R = G = B
        np.full((40, 50, 3), 37.0),  # one colour
    ],
    ids=["gray", "one-colour"],
)
def test_match_colors_gray_or_flat_style_is_safe(style):
    content = coloured((30, 30), 13)
    matched = match_colors(style, content).compute()
    assert np.isfinite(matched).all()
    np.testing.assert_allclose(matched.mean(axis=(0, 1)), content.mean(axis=(0, 1)), atol=1e-6)
    assert matched.std() <= content.std() * 3  # the missing directions are not blown up


def test_colour_pictures_must_have_three_channels():
    with pytest.raises(InputError, match=r"shape \(H, W, 3\)"):
        match_colors(np.zeros((4, 4)), np.zeros((4, 4, 3)))
