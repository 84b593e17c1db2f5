"""Image I/O: round trips, pyramids, clear errors for bad files, atomic writes."""

import errno
import os
import pickle
import warnings

import dask
import dask.array as da
import imagecodecs
import numpy as np
import pytest
import tifffile
from PIL import Image

from daskstyle.core.errors import DaskstyleError, InputError
from daskstyle.io import images, writers
from daskstyle.io.images import pyramid_shapes, read_image, write_image
from daskstyle.io.resize import resize


@pytest.fixture
def rgb8():
    return np.random.default_rng(0).integers(0, 256, (70, 90, 3), dtype=np.uint8)


def leftovers(directory):
    return sorted(p.name for p in directory.iterdir())


@pytest.mark.parametrize("name", ["out.png", "out.tif", "out.TIFF"])
def test_write_then_read_round_trip(tmp_path, rgb8, name):
    image = da.from_array(rgb8.astype(np.float32) + 0.3, chunks=(32, 40, 3))
    write_image(tmp_path / name, image, tile=32)
    back = read_image(tmp_path / name)
    assert back.dtype == np.float32 and back.shape == rgb8.shape
    np.testing.assert_array_equal(back.compute(), rgb8)
    assert leftovers(tmp_path) == [name]


def test_written_values_are_rounded_and_clipped(tmp_path):
    values = np.array([[[-5.0, 0.4, 0.6], [254.6, 300.0, 127.5]]], np.float32)
    write_image(tmp_path / "x.tif", da.from_array(values))
    np.testing.assert_array_equal(
        tifffile.imread(tmp_path / "x.tif"), [[[0, 0, 1], [255, 255, 128]]]
    )


def test_jpeg_round_trip_is_close(tmp_path, rgb8):
    smooth = np.broadcast_to(np.linspace(0, 255, 90, dtype=np.float32)[None, :, None], (70, 90, 3))
    write_image(tmp_path / "x.jpg", da.from_array(smooth))
    assert np.abs(read_image(tmp_path / "x.jpg").compute() - smooth).mean() < 2


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("layout", ["contig", "planar", "gray"])
def test_read_tiff_depths_and_layouts(tmp_path, rgb8, bits, layout):
    data = rgb8 if bits == 8 else rgb8.astype(np.uint16) * 257
    if layout == "planar":
        tifffile.imwrite(
            tmp_path / "in.tif", np.moveaxis(data, 2, 0), photometric="rgb", planarconfig="separate"
        )
    elif layout == "gray":
        data = data[..., 0]
        tifffile.imwrite(tmp_path / "in.tif", data, photometric="minisblack")
    else:
        tifffile.imwrite(tmp_path / "in.tif", data, photometric="rgb", tile=(32, 48))
    image = read_image(tmp_path / "in.tif")
    expected = rgb8[..., :1].repeat(3, axis=2) if layout == "gray" else rgb8
    assert image.shape == expected.shape
    np.testing.assert_allclose(image.compute(), expected, atol=1e-4)


def test_tiff_is_read_lazily_a_region_at_a_time(tmp_path, rgb8, monkeypatch):
    tifffile.imwrite(tmp_path / "in.tif", rgb8, photometric="rgb", tile=(16, 16))
    with dask.config.set({"array.chunk-size": "8KiB"}):  # chunks of whole tiles, 16-32 px
        image = read_image(tmp_path / "in.tif")
    assert image.numblocks[:2] > (1, 1)
    regions = []
    real_getitem = images._TiffLevel.__getitem__
    monkeypatch.setattr(
        images._TiffLevel,
        "__getitem__",
        lambda self, index: regions.append(index) or real_getitem(self, index),
    )
    np.testing.assert_array_equal(image[:10, :10].compute(), rgb8[:10, :10])
    assert len(regions) == 1 and regions[0][0].stop <= 32 and regions[0][1].stop <= 32


@pytest.mark.parametrize("name, bits", [("in.png", 8), ("in.jpg", 8), ("in16.png", 16)])
def test_a_whole_picture_is_decoded_by_its_task_not_held_in_the_graph(tmp_path, name, bits):
    """A cluster's scheduler gets the picture's path with every graph that reads it, not its
    pixels (a 33-megapixel PNG was 95 MiB a level)."""
    big = np.random.default_rng(1).integers(0, 256, (400, 500, 3), dtype=np.uint8)
    write_image(tmp_path / name, big, bit_depth=bits)
    image = read_image(tmp_path / name)
    assert len(pickle.dumps(dict(image.__dask_graph__()))) < 10_000  # the pixels: 600 kB
    with Image.open(tmp_path / name) as decoded:  # JPEG: lossy, so Pillow's own decoding
        expected = big if name.endswith(".png") else np.asarray(decoded)
    np.testing.assert_array_equal(image.compute(), expected)


def test_a_picture_changed_after_it_was_read_is_one_clear_line(tmp_path, rgb8):
    write_image(tmp_path / "in.png", rgb8)
    image = read_image(tmp_path / "in.png")
    write_image(tmp_path / "in.png", rgb8[::-1])
    os.utime(tmp_path / "in.png", ns=(1, 1))
    with pytest.raises(InputError, match="in.png changed while it was in use: put the picture"):
        image.compute()
    (tmp_path / "in.png").unlink()
    with pytest.raises(InputError, match="in.png went away while it was in use"):
        image.compute()


def test_read_png_gray_16bit_and_rgba(tmp_path, rgb8):
    gray16 = rgb8[..., 0].astype(np.uint16) * 257
    Image.fromarray(gray16).save(tmp_path / "g16.png")
    np.testing.assert_allclose(
        read_image(tmp_path / "g16.png")[..., 2].compute(), rgb8[..., 0], atol=1e-4
    )
    Image.fromarray(rgb8[..., 1]).save(tmp_path / "g8.png")
    np.testing.assert_array_equal(read_image(tmp_path / "g8.png")[..., 0].compute(), rgb8[..., 1])
    rgba = np.dstack([rgb8, np.full(rgb8.shape[:2], 7, np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "a.png")
    with pytest.warns(UserWarning, match="alpha channel is ignored"):
        image = read_image(tmp_path / "a.png")
    np.testing.assert_array_equal(image.compute(), rgb8)


def test_rgba_tiff_warns(tmp_path, rgb8):
    rgba = np.dstack([rgb8, rgb8[..., :1]])
    tifffile.imwrite(tmp_path / "a.tif", rgba, photometric="rgb", extrasamples=["unassalpha"])
    with pytest.warns(UserWarning, match="alpha"):
        np.testing.assert_array_equal(read_image(tmp_path / "a.tif").compute(), rgb8)


def test_pyramid_levels_have_the_right_sizes(tmp_path, rgb8):
    big = np.tile(rgb8, (3, 2, 1))  # 210 x 180
    write_image(
        tmp_path / "p.tif",
        da.from_array(big, chunks=(64, 64, 3)),
        pyramid=True,
        tile=32,
        description="daskstyle test",
    )
    with tifffile.TiffFile(tmp_path / "p.tif") as tf:
        assert tf.is_bigtiff
        assert tf.pages[0].description == "daskstyle test"
        assert tf.pages[0].is_tiled and tf.pages[0].tilelength == 32
        levels = tf.series[0].levels
        shapes = [level.shape for level in levels]
        half = levels[1].asarray()
    assert shapes == [(210, 180, 3), (105, 90, 3), (53, 45, 3), (27, 23, 3)]
    assert pyramid_shapes((210, 180), 32) == [s[:2] for s in shapes]
    box = big.astype(np.float64).reshape(105, 2, 90, 2, 3).mean(axis=(1, 3))
    assert np.abs(half - box).max() <= 0.5 + 1e-9  # area average, rounded


def test_each_deeper_level_is_the_one_above_as_stored_halved(tmp_path, rgb8, monkeypatch):
    """The canvas is read for the first two levels only; each further level is made from the
    level above it as written (kept in a scratch folder that is gone afterwards)."""
    big = da.from_array(np.tile(rgb8, (4, 4, 1)).astype(np.float32), chunks=(64, 64, 3))
    reads = []
    monkeypatch.setattr(writers, "resize", lambda image, *a, **k: reads.append(image) or
                        resize(image, *a, **k))  # fmt: skip
    write_image(tmp_path / "p.tif", big, pyramid=True, tile=32)
    assert sum(image is big for image in reads) == 1  # level 1 only; level 0 is the canvas
    with tifffile.TiffFile(tmp_path / "p.tif") as tf:
        levels = [level.asarray().astype(np.float64) for level in tf.series[0].levels]
    assert [level.shape[:2] for level in levels] == pyramid_shapes((280, 360), 32)
    for above, level in zip(levels[1:3], levels[2:4]):  # 140 x 180 -> 70 x 90 -> 35 x 45
        h, w = level.shape[:2]
        box = above.reshape(h, 2, w, 2, 3).mean(axis=(1, 3))
        assert np.abs(level - box).max() <= 0.5 + 1e-9
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.tif"]


def test_no_pyramid_without_asking(tmp_path, rgb8):
    write_image(tmp_path / "p.tif", da.from_array(rgb8), tile=32)
    with tifffile.TiffFile(tmp_path / "p.tif") as tf:
        assert len(tf.series[0].levels) == 1 and len(tf.pages) == 1


def truncated_tiff(path, rgb8, keep):
    tifffile.imwrite(path, rgb8, photometric="rgb", tile=(32, 32), compression="zlib")
    data = path.read_bytes()
    path.write_bytes(data[: keep(len(data))])


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p, a: None, "no such file"),
        (lambda p, a: p.write_text("not an image at all"), "not an image in a known format"),
        (lambda p, a: truncated_tiff(p, a, lambda n: n - 100), "truncated"),
        (lambda p, a: truncated_tiff(p, a, lambda n: 60), "truncated|corrupt"),
        (lambda p, a: truncated_tiff(p, a, lambda n: 12), "corrupt"),
        (lambda p, a: p.write_bytes(b"II*\0" + bytes(range(200))), "corrupt"),
        (
            lambda p, a: (
                Image.fromarray(a).save(p, format="PNG") or p.write_bytes(p.read_bytes()[:300])
            ),
            "corrupt or truncated",
        ),
        (lambda p, a: tifffile.imwrite(p, np.zeros((0, 5, 3), np.uint8)), "empty image"),
        (
            lambda p, a: tifffile.imwrite(
                p, np.zeros((8, 8, 5), np.uint8), photometric="minisblack", planarconfig="contig"
            ),
            "5 channels",
        ),
        (
            lambda p, a: tifffile.imwrite(p, np.zeros((8, 8, 3), np.float32), photometric="rgb"),
            "only 8- and 16-bit",
        ),
        (
            lambda p, a: tifffile.imwrite(p, np.zeros((2, 8, 8, 3), np.uint8), photometric="rgb"),
            "stack of images",
        ),
    ],
    ids=[
        "missing",
        "unknown",
        "truncated-data",
        "truncated-ifd",
        "truncated-header",
        "garbage-tiff",
        "truncated-png",
        "zero-size",
        "five-channels",
        "float",
        "stack",
    ],
)
def test_bad_input_gives_one_clear_line(tmp_path, rgb8, make, message):
    path = tmp_path / "bad.tif"
    with warnings.catch_warnings():  # tifffile warns about writing a zero-size image
        warnings.simplefilter("ignore")
        make(path, rgb8)
    with pytest.raises(InputError, match=message) as info:
        read_image(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


@pytest.mark.parametrize(
    "target, message",
    [
        (lambda d: d / "missing-dir" / "out.tif", "missing-dir does not exist"),
        (lambda d: (d / "a-file").touch() or d / "a-file" / "out.tif", "a-file does not exist"),
    ],
)
def test_unwritable_destination(tmp_path, rgb8, target, message):
    path = target(tmp_path)
    with pytest.raises(DaskstyleError, match=message) as info:
        write_image(path, da.from_array(rgb8))
    assert "\n" not in str(info.value)
    assert not path.exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_directory(tmp_path, rgb8):
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(DaskstyleError, match="not writable"):
            write_image(tmp_path / "out.tif", da.from_array(rgb8))
    finally:
        tmp_path.chmod(0o755)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("name", ["out.tif", "out.png"])
def test_disk_full_midway_leaves_nothing_and_keeps_the_old_file(tmp_path, rgb8, monkeypatch, name):
    (tmp_path / name).write_bytes(b"previous result")
    real_bands = writers._bands

    def bands_then_disk_full(image, rows):
        generator = real_bands(image, rows)
        yield next(generator)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(writers, "_bands", bands_then_disk_full)
    with pytest.raises(DaskstyleError, match="No space left on device"):
        write_image(tmp_path / name, da.from_array(rgb8), tile=16)
    assert leftovers(tmp_path) == [name]
    assert (tmp_path / name).read_bytes() == b"previous result"


def test_errors_from_computing_the_image_pass_through(tmp_path, rgb8):
    def broken(block):
        raise InputError("input tile is corrupt")

    image = da.from_array(rgb8.astype(np.float32), chunks=32).map_blocks(broken, dtype=np.float32)
    with pytest.raises(InputError, match="input tile is corrupt"):
        write_image(tmp_path / "out.tif", image)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "name, image, message",
    [
        ("out.bmp", np.zeros((4, 4, 3)), "use a .tif, .png, .jpg or .ome.zarr name"),
        ("out.png", np.zeros((4, 4)), r"shape \(H, W, 3\)"),
        ("out.tif", np.zeros((0, 4, 3)), r"shape \(H, W, 3\)"),
    ],
)
def test_bad_write_arguments(tmp_path, name, image, message):
    with pytest.raises(InputError, match=message):
        write_image(tmp_path / name, image)
    assert leftovers(tmp_path) == []


def test_png_refuses_huge_images(tmp_path, monkeypatch):
    monkeypatch.setattr(writers, "MAX_PILLOW_PIXELS", 100)
    with pytest.raises(InputError, match="write a .tif or .ome.zarr instead"):
        write_image(tmp_path / "big.png", da.zeros((20, 20, 3), chunks=10))
    assert leftovers(tmp_path) == []


@pytest.fixture
def fine():
    """Float pixels between the 8-bit levels, a few outside 0-255."""
    values = np.random.default_rng(1).random((70, 90, 3)) * 265 - 5
    return da.from_array(values.astype(np.float32), chunks=(32, 40, 3))


@pytest.mark.parametrize("name", ["out16.tif", "out16.png"])
def test_16bit_round_trip(tmp_path, fine, name):
    write_image(tmp_path / name, fine, tile=32, bit_depth=16, description="run 16")
    wanted = np.clip(fine.compute().astype(np.float64), 0, 255)
    back = read_image(tmp_path / name)
    assert back.dtype == np.float32 and back.shape == fine.shape
    assert np.abs(back.compute() - wanted).max() <= 0.5 / 257 + 1e-5
    reader = tifffile.imread if name.endswith(".tif") else imagecodecs.imread
    samples = reader(tmp_path / name)
    assert samples.dtype == np.uint16
    np.testing.assert_array_equal(samples, np.rint(wanted * 257))
    assert leftovers(tmp_path) == [name]


def test_16bit_tiff_pyramid_levels_are_16bit(tmp_path, fine):
    write_image(tmp_path / "p.tif", fine, pyramid=True, tile=32, bit_depth=16)
    with tifffile.TiffFile(tmp_path / "p.tif") as tf:
        levels = [level.asarray() for level in tf.series[0].levels]
    assert [level.dtype for level in levels] == [np.uint16] * 3
    box = fine.compute().astype(np.float64)[:70, :90].reshape(35, 2, 45, 2, 3).mean(axis=(1, 3))
    assert np.abs(levels[1] - np.clip(box, 0, 255) * 257).max() <= 0.5 + 0.01


@pytest.mark.parametrize("bits", [8, 16])
def test_png_keeps_the_description(tmp_path, fine, bits):
    write_image(tmp_path / "d.png", fine, bit_depth=bits, description="daskstyle — run ✓")
    with Image.open(tmp_path / "d.png") as img:
        img.load()  # checks every chunk's CRC
        assert img.text["Description"] == "daskstyle — run ✓"


def test_16bit_tiff_keeps_the_description(tmp_path, fine):
    write_image(tmp_path / "d.tif", fine, bit_depth=16, description="daskstyle tiff")
    with tifffile.TiffFile(tmp_path / "d.tif") as tf:
        assert tf.pages[0].description == "daskstyle tiff"


@pytest.mark.parametrize(
    "name, bits, message",
    [
        ("out.jpg", 16, "16-bit output needs a .tif or .png name"),
        ("out.JPEG", 16, "16-bit output needs a .tif or .png name"),
        ("out.tif", 12, "bit depth must be 8 or 16, not 12"),
        ("out.png", 32, "bit depth must be 8 or 16, not 32"),
    ],
)
def test_bad_bit_depths_are_refused_in_one_line(tmp_path, rgb8, name, bits, message):
    with pytest.raises(InputError, match=message) as info:
        images.check_output(tmp_path / name, bit_depth=bits)
    assert "\n" not in str(info.value)
    with pytest.raises(InputError, match=message):
        write_image(tmp_path / name, da.from_array(rgb8), bit_depth=bits)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("name", ["nan.tif", "nan.png"])
def test_16bit_picture_that_is_not_finite_is_never_written(tmp_path, rgb8, name):
    image = rgb8.astype(np.float32)
    image[40, 3, 1] = np.nan
    with pytest.raises(DaskstyleError, match="not finite"):
        write_image(tmp_path / name, da.from_array(image, chunks=16), tile=16, bit_depth=16)
    assert leftovers(tmp_path) == []


def test_truncated_16bit_png_is_one_clear_line(tmp_path, fine):
    write_image(tmp_path / "t.png", fine, bit_depth=16)
    (tmp_path / "t.png").write_bytes((tmp_path / "t.png").read_bytes()[:200])
    with pytest.raises(InputError, match="corrupt or truncated") as info:
        read_image(tmp_path / "t.png")
    assert "\n" not in str(info.value)


def test_huge_16bit_png_is_refused_before_decoding(tmp_path, fine, monkeypatch):
    write_image(tmp_path / "h.png", fine, bit_depth=16)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(InputError, match="too large to read whole: convert it to a tiled TIFF"):
        read_image(tmp_path / "h.png")
