"""Output formats: OME-Zarr read back with ome-zarr-py, and print-ready TIFF, PNG and JPEG
(sRGB ICC profile, --dpi), 8 and 16 bits."""

import argparse
import errno
import io
import json
import os
import shutil

import dask.array as da
import imagecodecs
import numpy as np
import pytest
import tifffile
from ome_zarr.io import parse_url
from ome_zarr.reader import Reader
from PIL import Image, ImageCms

from daskstyle.core.errors import DaskstyleError, InputError, SettingError
from daskstyle.frontends.options import add_run_options
from daskstyle.io import writers
from daskstyle.io.writers import check_output, pyramid_shapes, write_image
from daskstyle.run import painting
from daskstyle.run.rundir import default_workdir
from daskstyle.settings import Settings

from .conftest import SHALLOW_RUN, final_canvas


@pytest.fixture
def fine():
    """Float pixels between the 8-bit levels, a few outside 0-255, in awkward chunks."""
    values = np.random.default_rng(2).random((70, 90, 3)) * 265 - 5
    return da.from_array(values.astype(np.float32), chunks=(32, 40, 3))


def samples(image, bits):
    """``image`` rounded and clipped as every output writes it."""
    scale = 257 if bits == 16 else 1
    return np.clip(np.rint(image.astype(np.float64) * scale), 0, 255 * scale)


def read_ome_zarr(path):
    """The levels ((C, Y, X) arrays) and metadata of the first image at ``path``."""
    image = next(iter(Reader(parse_url(str(path)))()))
    return [np.asarray(level) for level in image.data], image.metadata


@pytest.mark.parametrize("bits", [8, 16])
def test_ome_zarr_reads_back_equal_to_the_canvas(tmp_path, fine, bits):
    path = tmp_path / "out.ome.zarr"
    write_image(path, fine, tile=32, bit_depth=bits, dpi=150, description="run ✓")
    levels, meta = read_ome_zarr(path)
    assert [level.shape for level in levels] == [(3, *s) for s in pyramid_shapes((70, 90), 32)]
    assert levels[0].dtype == (np.uint16 if bits == 16 else np.uint8)
    np.testing.assert_array_equal(levels[0].transpose(1, 2, 0), samples(fine.compute(), bits))
    # each level is the one above as stored, halved: the mean of each 2x2, rounded
    box = levels[0].astype(np.float64).reshape(3, 35, 2, 45, 2).mean(axis=(2, 4))
    assert np.abs(levels[1] - np.rint(box)).max() <= (1 if bits == 16 else 0)
    assert [axis["name"] for axis in meta["axes"]] == ["c", "y", "x"]
    scale = meta["coordinateTransformations"][0][0]["scale"]
    assert scale == pytest.approx([1, 1 / 150, 1 / 150])
    attributes = json.loads((path / "zarr.json").read_text())["attributes"]
    assert attributes["ome"]["version"] == "0.5"
    assert attributes["daskstyle"] == {"description": "run ✓"}
    assert sorted(os.listdir(tmp_path)) == ["out.ome.zarr"]


def test_a_painting_to_ome_zarr_reads_back_equal_to_its_canvas(pictures, weights_file, tmp_path):
    out = tmp_path / "painting.ome.zarr"
    settings = Settings(r0=48, max_iters=2, network="vgg19", tile=32, bit_depth=16, dpi=600,
                        **SHALLOW_RUN)  # fmt: skip
    painting.transfer(*pictures, out, settings=settings, weights=weights_file)
    levels, meta = read_ome_zarr(out)
    canvas = final_canvas(default_workdir(out))
    np.testing.assert_array_equal(levels[0].transpose(1, 2, 0), samples(canvas, 16))
    assert meta["coordinateTransformations"][0][0]["scale"] == pytest.approx([1, 1 / 600, 1 / 600])
    record = json.loads(json.loads((out / "zarr.json").read_text())["attributes"]["daskstyle"]
                        ["description"])  # fmt: skip
    assert record["settings"]["dpi"] == 600


def test_ome_zarr_replaces_only_its_own(tmp_path, fine):
    ours, theirs = tmp_path / "a.ome.zarr", tmp_path / "b.ome.zarr"
    write_image(ours, fine, tile=32)
    write_image(ours, fine * 0, tile=32)  # daskstyle's own: replaced whole
    assert read_ome_zarr(ours)[0][0].max() == 0
    write_image(theirs, fine, tile=32)
    (theirs / "labels").mkdir()  # what a viewer added to it is the user's
    with pytest.raises(InputError, match="not an OME-Zarr daskstyle wrote"):
        write_image(theirs, fine, tile=32)
    shutil.rmtree(theirs)
    theirs.mkdir()
    (theirs / "zarr.json").write_text('{"attributes": {"ome": {}}, "zarr_format": 3}')
    with pytest.raises(InputError, match="not an OME-Zarr daskstyle wrote") as info:
        write_image(theirs, fine, tile=32)
    assert "\n" not in str(info.value)
    assert sorted(os.listdir(theirs)) == ["zarr.json"]
    (tmp_path / "file.ome.zarr").write_bytes(b"a user's file")
    with pytest.raises(InputError, match="not an OME-Zarr daskstyle wrote"):
        check_output(tmp_path / "file.ome.zarr")
    assert sorted(os.listdir(tmp_path)) == ["a.ome.zarr", "b.ome.zarr", "file.ome.zarr"]


def test_ome_zarr_that_fails_midway_keeps_the_old_one(tmp_path, fine, monkeypatch):
    path = tmp_path / "out.ome.zarr"
    write_image(path, fine, tile=32)
    before = read_ome_zarr(path)[0][0]

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(writers.ngff, "to_samples", disk_full)
    with pytest.raises(DaskstyleError, match="No space left on device"):
        write_image(path, fine * 0, tile=32)
    np.testing.assert_array_equal(read_ome_zarr(path)[0][0], before)
    assert sorted(os.listdir(tmp_path)) == ["out.ome.zarr"]


def test_ome_zarr_not_finite_is_never_written(tmp_path, fine):
    image = fine.compute()
    image[50, 3, 1] = np.nan
    with pytest.raises(DaskstyleError, match="rows 32-63 of the picture are not finite"):
        write_image(tmp_path / "nan.ome.zarr", da.from_array(image, chunks=32), tile=32)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "name, message",
    [("out.zarr", "use a .tif, .png, .jpg or .ome.zarr name"), (".ome.zarr", "use a .tif")],
)
def test_bad_ome_zarr_names(tmp_path, name, message):
    with pytest.raises(InputError, match=message):
        check_output(tmp_path / name)


def srgb_description(profile: bytes) -> str:
    return ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(profile)))


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("pyramid", [False, True])
def test_tiff_carries_srgb_and_dpi(tmp_path, fine, bits, pyramid):
    write_image(tmp_path / "p.tif", fine, tile=32, bit_depth=bits, dpi=600, pyramid=pyramid)
    with tifffile.TiffFile(tmp_path / "p.tif") as tf:
        page = tf.pages[0]
        assert "sRGB" in srgb_description(page.tags[34675].value)
        assert page.tags["XResolution"].value == (600, 1)
        assert page.tags["YResolution"].value == (600, 1)
        assert page.tags["ResolutionUnit"].value == tifffile.RESUNIT.INCH
        assert page.dtype == (np.uint16 if bits == 16 else np.uint8)
        if pyramid:  # a level half as wide prints as large: half the dots per inch
            level = tf.series[0].levels[1].keyframe
            x, y = level.tags["XResolution"].value, level.tags["YResolution"].value
            assert x[0] / x[1] == pytest.approx(600 * 45 / 90)
            assert y[0] / y[1] == pytest.approx(600 * 35 / 70)


@pytest.mark.parametrize("name, bits", [("p.png", 8), ("p.png", 16), ("p.jpg", 8)])
def test_png_and_jpeg_carry_srgb_and_dpi(tmp_path, fine, name, bits):
    write_image(tmp_path / name, fine, bit_depth=bits, dpi=72, description="run")
    with Image.open(tmp_path / name) as img:
        img.load()  # checks every chunk's CRC
        assert "sRGB" in srgb_description(img.info["icc_profile"])
        assert img.info["dpi"] == pytest.approx((72, 72), abs=0.01)
        if name.endswith(".png"):
            assert img.text["Description"] == "run"
    if bits == 16:  # still 16 bits, samples unchanged by the chunks added
        back = imagecodecs.png_decode((tmp_path / name).read_bytes())
        np.testing.assert_array_equal(back, samples(fine.compute(), 16))


def test_dpi_is_a_setting_with_a_rule_and_an_option():
    assert Settings().dpi == 300
    for bad in (0, 2.5, True, 70000):
        with pytest.raises(SettingError, match="dpi"):
            Settings(dpi=bad)
    parser = argparse.ArgumentParser()
    add_run_options(parser)
    assert parser.parse_args(["-o", "x.tif", "--dpi", "600"]).dpi == 600
