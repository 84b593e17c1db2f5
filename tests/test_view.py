"""``daskstyle view``: the page, Deep Zoom tiles equal to the canvas, the token, the paths.

Against a real (small) finished run, and a synthetic level with an overview for the zoomed-out
tiles and a live change of step. The browser's own test is in test_view_browser.py.
"""

import http.client
import io
import json
import math
import os
import re
import shutil
from urllib.parse import quote

import dask.array as da
import numpy as np
import pytest
import tifffile
import zarr
from PIL import Image

from daskstyle.frontends import cli
from daskstyle.frontends.view import deepzoom
from daskstyle.frontends.view.reading import ChunkCache
from daskstyle.frontends.view.server import Viewer
from daskstyle.frontends.view.sources import open_source
from daskstyle.io import resize
from daskstyle.optimise import overview
from daskstyle.optimise.state import OVERVIEW, LevelState
from tests.conftest import final_canvas, snapshot


class Client:
    """GET and HEAD on a running :class:`Viewer`, with or without its token."""

    def __init__(self, viewer: Viewer):
        self.viewer = viewer

    def get(self, path, token=True, method="GET", headers=None):
        if token is True:
            token = self.viewer.token
        if token is not None:
            path += ("&" if "?" in path else "?") + "token=" + quote(token)
        connection = http.client.HTTPConnection("127.0.0.1", self.viewer.port, timeout=10)
        connection.request(method, path, headers=headers or {})
        answer = connection.getresponse()
        body = answer.read()
        connection.close()
        return answer.status, body, answer


@pytest.fixture
def serve():
    """Start a viewer of a path: (viewer, client); closed after the test."""
    started = []

    def start(path, **kwargs):
        viewer = Viewer(open_source(path, **kwargs)).start()
        started.append(viewer)
        return viewer, Client(viewer)

    yield start
    for viewer in started:
        viewer.close()


def png_pixels(body: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(body)) as image:
        assert image.mode == "RGB"
        return np.asarray(image)


def deep_zoom_image(client, name) -> np.ndarray:
    """Every full-resolution tile of image ``name``, put together."""
    status, body, _ = client.get(f"/{name}.dzi")
    assert status == 200
    width, height = (int(re.search(rf'{k}="(\d+)"', body.decode())[1]) for k in ("Width", "Height"))
    z, size = deepzoom.max_level((height, width)), deepzoom.TILE_SIZE
    image = np.zeros((height, width, 3), np.uint8)
    for y in range(-(-height // size)):
        for x in range(-(-width // size)):
            status, body, answer = client.get(f"/{name}_files/{z}/{x}_{y}.png")
            assert status == 200 and answer.getheader("Content-Type") == "image/png"
            image[y * size : (y + 1) * size, x * size : (x + 1) * size] = png_pixels(body)
    return image


def rounded(canvas) -> np.ndarray:
    """Canvas values as the previews round them (independently of the viewer's code)."""
    return np.clip(np.rint(np.asarray(canvas)), 0, 255).astype(np.uint8)


def test_a_real_run_its_page_status_levels_and_previews(finished_run, serve):
    output, workdir = finished_run
    viewer, client = serve(workdir)
    status, body, answer = client.get("/")
    assert status == 200 and b'id="viewer"' in body
    cookie = answer.getheader("Set-Cookie")
    assert f"{viewer.cookie}={viewer.token}" in cookie and "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert client.get("/static/openseadragon.min.js")[0] == 200
    info = json.loads(client.get("/status.json")[1])
    assert info["finished"] and info["eta_seconds"] == 0
    assert [lv["level"] for lv in info["levels"]] == [1, 2]
    assert all(lv["done"] and lv["preview"] for lv in info["levels"])
    assert [(row[0], row[1]) for row in info["loss"]] == [(1, 1), (1, 2), (1, 3)] + [
        (2, 1), (2, 2), (2, 3)]  # fmt: skip
    for level in (1, 2):
        status, body, _ = client.get(f"/preview/{level}.png")
        assert status == 200 and body == (workdir / f"level{level}.png").read_bytes()
    image = deep_zoom_image(client, "level/2")
    assert np.array_equal(image, rounded(final_canvas(workdir)))
    assert image.shape[:2] == (96, 80)
    smallest = png_pixels(client.get("/level/2_files/0/0_0.png")[1])
    assert smallest.shape == (1, 1, 3)


def test_a_painting_is_served_as_output_dzi(finished_run, serve):
    output, workdir = finished_run
    _, client = serve(output)
    image = deep_zoom_image(client, "output")
    assert np.array_equal(image, tifffile.imread(output))
    assert np.array_equal(image, rounded(final_canvas(workdir)))
    assert client.get("/level/1.dzi")[0] == 404


def test_every_url_needs_the_token(finished_run, serve):
    _, workdir = finished_run
    viewer, client = serve(workdir)
    urls = ["/", "/status.json", "/level/1.dzi", "/level/1_files/6/0_0.png", "/preview/1.png",
            "/static/view.js", "/static/images/zoomin_rest.png", "/nothing"]  # fmt: skip
    for url in urls:
        assert client.get(url, token=None)[0] == 403, url
        assert client.get(url, token="wrong" + viewer.token)[0] == 403, url
        assert client.get(url, token=viewer.token[:-1])[0] == 403, url
        assert client.get(url, method="HEAD", token=None)[0] == 403, url
        expected = 404 if url == "/nothing" else 200
        assert client.get(url)[0] == expected, url
        with_cookie = {"Cookie": f"{viewer.cookie}={viewer.token}"}
        assert client.get(url, token=None, headers=with_cookie)[0] == expected, url
        status, body, _ = client.get(url, method="HEAD")
        assert status == expected and body == b""
    other_cookie = {"Cookie": f"daskstyle-view-1={viewer.token}"}
    assert client.get("/", token=None, headers=other_cookie)[0] == 403
    assert client.get("/", headers={"Host": f"evil.example:{viewer.port}"})[0] == 403
    assert client.get("/", headers={"Host": "127.0.0.1.evil.example"})[0] == 403
    assert client.get("/", headers={"Host": "localhost:8888"})[0] == 200  # a forwarded port
    assert client.get("/", method="POST")[0] in (405, 501)
    assert client.get("/status.json", method="PUT")[0] in (405, 501)


def test_no_path_outside_the_run_and_no_link_is_served(finished_run, serve, tmp_path):
    _, original = finished_run
    workdir = tmp_path / "run.daskstyle"
    shutil.copytree(original, workdir)
    secret = tmp_path / "secret.png"
    shutil.copy(workdir / "level1.png", secret)
    viewer, client = serve(workdir)
    for url in ["/../secret.png", "/static/../../secret.png", "/preview/../../secret.png",
                "/level/1_files/../../../run.json", "/%2e%2e/secret.png", "/run.json",
                "/loss.csv", "/level1/zarr.json", "/preview/0.png", "/preview/3.png",
                "/level/3.dzi", "/level/1_files/99/0_0.png", "/level/1_files/6/9_0.png",
                "/static/secret.png", "//etc/passwd"]:  # fmt: skip
        assert client.get(url)[0] == 404, url
    (workdir / "level1.png").unlink()
    (workdir / "level1.png").symlink_to(secret)
    assert client.get("/preview/1.png")[0] == 404
    z = deepzoom.max_level((96, 80))
    assert client.get(f"/level/2_files/{z}/0_0.png")[0] == 200
    canvas = next((workdir / "level2").glob("canvas?"))
    chunk = next(p for p in canvas.rglob("*") if p.is_file() and p.name != "zarr.json")
    outside = tmp_path / "chunk"
    shutil.move(chunk, outside)
    chunk.symlink_to(outside)
    viewer.source.cache = ChunkCache(viewer.source.cache.most_bytes)  # forget what was read
    assert client.get(f"/level/2_files/{z}/0_0.png")[0] == 404
    shutil.move(workdir / "level2", tmp_path / "level2")
    (workdir / "level2").symlink_to(tmp_path / "level2")
    assert client.get("/level/2.dzi")[0] == 404


def test_the_server_never_writes(finished_run, serve):
    output, workdir = finished_run
    before = snapshot(workdir), os.stat(output).st_mtime_ns
    for path in (workdir, output):
        _, client = serve(path)
        for url in ["/", "/status.json", "/level/2.dzi", "/level/2_files/7/0_0.png",
                    "/level/1_files/3/0_0.png", "/preview/2.png", "/output.dzi",
                    "/output_files/7/0_0.png", "/output_files/2/0_0.png"]:  # fmt: skip
            client.get(url)
    assert (snapshot(workdir), os.stat(output).st_mtime_ns) == before


def halved(image: np.ndarray) -> np.ndarray:
    """2 x 2 means, an odd edge averaged with itself: written apart from the package's code."""
    h, w = image.shape[:2]
    image = np.concatenate([image, image[-1:]]) if h % 2 else image
    image = np.concatenate([image, image[:, -1:]], axis=1) if w % 2 else image
    return image.reshape(image.shape[0] // 2, 2, image.shape[1] // 2, 2, 3).mean(axis=(1, 3))


def test_zoomed_out_tiles_are_halved_means_from_the_overview(synthetic_run, serve):
    workdir, state, canvas = synthetic_run
    shapes = overview.overview_shapes((700, 1000))
    assert shapes == [(350, 500), (175, 250)]
    _, client = serve(workdir)
    top = deepzoom.max_level((700, 1000))
    assert top == 10
    means, smallest = canvas.astype(np.float64), None
    for k in range(top + 1):
        if k <= len(shapes):  # the canvas, or an overview level: float means rounded once
            expected = smallest = rounded(means)
        else:  # below the overview: halved from its smallest level's 8-bit samples
            expected = smallest = rounded(halved(smallest.astype(np.float64)))
        status, body, _ = client.get(f"/level/1_files/{top - k}/0_0.png")
        assert status == 200
        assert np.array_equal(png_pixels(body), expected[:256, :256]), k
        means = halved(means)
    assert client.get(f"/level/1_files/{top}/3_2.png")[0] == 200  # the last tile: 232 x 188
    assert png_pixels(client.get(f"/level/1_files/{top}/3_2.png")[1]).shape == (188, 232, 3)
    assert client.get(f"/level/1_files/{top}/4_0.png")[0] == 404
    assert client.get("/level/2.dzi")[0] == 404  # not begun


def test_the_overview_reads_the_canvas_in_its_own_windows(synthetic_run, monkeypatch):
    # 64-px overview chunks: the level's 160-px chunks are read in 128-px windows, not
    # rechunked by Dask (which holds whole rows of chunks), and the means stay exact
    _, state, canvas = synthetic_run
    monkeypatch.setattr(overview, "CHUNK", 64)
    written = []
    monkeypatch.setattr(overview, "store_with_checksums",
                        lambda sources, targets: written.append(sources))  # fmt: skip
    state.commit(step=1, history=[[1.0, 1.0, 1.0, 0.1]])
    overview.keep_up(state, most_share=math.inf)
    first = written[0][0]
    assert first.chunks[:2] == ((64,) * 5 + (30,), (64,) * 7 + (52,))
    assert not [name for name in first.dask.layers if name.startswith("rechunk")]
    assert np.array_equal(first.compute(), rounded(halved(canvas.astype(np.float64))))


def test_a_shrunk_canvas_comes_from_the_overview_while_it_shows_the_canvas_whole(
    synthetic_run,
):
    _, state, canvas = synthetic_run
    level1 = overview.at_least(state, 400)  # 350 x 500: the smallest level of 400 px or more
    assert level1.dtype == np.float32
    assert np.array_equal(level1.compute(), rounded(halved(canvas.astype(np.float64))))
    assert overview.at_least(state, 250).shape == (175, 250, 3)
    assert overview.at_least(state, 600) is None  # only the canvas is that large
    chunk = state.path / OVERVIEW / "1" / "c" / "0" / "0" / "0"
    chunk.write_bytes(chunk.read_bytes()[:-1])
    assert overview.at_least(state, 400) is None  # damaged: the canvas is read instead
    state.commit(step=1, history=[[1.0, 1.0, 1.0, 0.1]])
    assert overview.at_least(state, 250) is None  # shows an older canvas


def test_a_large_levels_preview_is_shrunk_from_its_overview(synthetic_run, monkeypatch):
    _, state, canvas = synthetic_run
    read = []
    monkeypatch.setattr(state, "canvas", lambda: read.append(1))
    preview = overview.shrunk(state, lambda image: image, 400).compute()
    assert preview.shape == (280, 400, 3) and not read
    level1 = rounded(halved(canvas.astype(np.float64))).astype(np.float32)
    assert np.array_equal(preview, resize.resize(da.from_array(level1), (280, 400)).compute())


def test_a_new_step_shows_at_every_zoom(synthetic_run, serve):
    workdir, state, canvas = synthetic_run
    _, client = serve(workdir)
    top = deepzoom.max_level((700, 1000))
    before = [client.get(f"/level/1_files/{z}/0_0.png")[1] for z in (top, top - 1)]
    version = json.loads(client.get("/status.json")[1])["images"][0]["version"]
    brighter = da.from_array(np.clip(canvas + 40, 0, 255), chunks=(160, 160, 3))
    state.write(1, {"canvas": brighter})
    state.commit(step=1, current=1, history=[[40.0, 40.0, 1.0, 0.1]])
    overview.keep_up(state, most_share=math.inf)  # however soon after the last
    after = [client.get(f"/level/1_files/{z}/0_0.png")[1] for z in (top, top - 1)]
    assert all(a != b for a, b in zip(after, before))
    assert np.array_equal(png_pixels(after[0]), rounded(np.clip(canvas + 40, 0, 255))[:256, :256])
    info = json.loads(client.get("/status.json")[1])
    assert info["images"][0]["version"] != version and info["levels"][0]["step"] == 1
    assert sorted(p.name for p in state.path.iterdir() if OVERVIEW in p.name) == [OVERVIEW]


def test_an_overview_takes_a_tenth_of_the_time_at_most(synthetic_run, monkeypatch):
    _, state, canvas = synthetic_run
    took = overview.shown(state.path / OVERVIEW)["seconds"]
    written_at = overview.shown(state.path / OVERVIEW)["written_at"]
    state.commit(step=1, history=[[1.0, 1.0, 1.0, 0.1]])
    monkeypatch.setattr(overview.time, "time", lambda: written_at + 9 * took)
    assert not overview.keep_up(state)  # says whether it wrote one: the run times those
    assert overview.shown(state.path / OVERVIEW)["step"] == 0
    monkeypatch.setattr(overview.time, "time", lambda: written_at + 11 * took)
    assert overview.keep_up(state)
    assert overview.shown(state.path / OVERVIEW)["step"] == 1
    state.commit(step=2, history=[[1.0, 0.01, 1.0, 0.1]] * 2)  # the level's last step
    assert overview.keep_up(state) and not overview.keep_up(state)
    assert overview.shown(state.path / OVERVIEW)["step"] == 2


def test_view_says_in_one_line_what_it_cannot_show(tmp_path, capsys):
    assert cli.main(["view", str(tmp_path / "nothing")]) == 1
    assert "neither a run directory" in capsys.readouterr().err
    (tmp_path / "x.ome.zarr").mkdir()
    assert cli.main(["view", str(tmp_path / "x.ome.zarr"), "--no-browser"]) == 1
    assert "not an OME-Zarr image" in capsys.readouterr().err
    (tmp_path / "flat.tif").write_bytes(b"II*\0 not a tiff")
    assert cli.main(["view", str(tmp_path / "flat.tif")]) == 1
    assert capsys.readouterr().err.count("\n") == 1


def test_run_view_serves_beside_the_run_which_keeps_its_level_halved(
    pictures, weights_file, tmp_path, capsys, monkeypatch
):
    from daskstyle.api import style_graph
    from daskstyle.run import footprint
    from tests.conftest import SHALLOW_RUN

    started = []
    real_start = Viewer.start
    monkeypatch.setattr(Viewer, "start", lambda self: started.append(self) or real_start(self))
    content = tmp_path / "content.png"  # one level of 600 x 400 px: halved to 300 and 150
    Image.open(pictures[0]).resize((600, 400)).save(content)
    out = tmp_path / "out.png"
    argv = ["run", str(content), str(pictures[1]), "-o", str(out), "--r0", "600", "--max-iters",
            "1", "--tile", "304", "--network", "vgg19", "--content-layer", "relu2_1",
            "--style-layers", "relu1_1,relu2_1", "--weights", str(weights_file), "--cluster",
            "threads", "--view"]  # fmt: skip
    assert cli.main(argv) == 0
    assert len(started) == 1 and f"view the run at {started[0].url}\n" in capsys.readouterr().out
    assert started[0].url.startswith("http://127.0.0.1:") and "?token=" in started[0].url
    with pytest.raises(OSError):  # closed with the run
        Client(started[0]).get("/")
    workdir = out.with_name("out.png.daskstyle")
    assert started[0].source.folder.path == workdir.resolve()
    graph = style_graph(network="vgg19", weights=weights_file, **SHALLOW_RUN)
    (size,) = footprint.level_sizes((400, 600), graph, r0=600, tile=304, dtype="float32")
    folder = workdir / "level1"
    state = LevelState.open(folder)
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == [
        f"canvas{state.attrs['current']}", OVERVIEW]  # fmt: skip
    kept = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()
               and f.name != "zarr.json")  # fmt: skip
    assert kept == size.kept_bytes
    shown = overview.shown(folder / OVERVIEW)
    assert (shown["step"], shown["current"], shown["levels"]) == (1, state.attrs["current"], 2)
    means = state.canvas().compute().astype(np.float64)
    for k in (1, 2):
        means = halved(means)
        kept = np.asarray(zarr.open_array(folder / OVERVIEW / str(k), mode="r"))
        assert np.array_equal(kept, rounded(means)), k


def test_a_tif_pyramid_is_read_level_by_level(tmp_path, serve):
    from daskstyle.io.images import write_image

    picture = np.random.default_rng(2).integers(0, 256, (1000, 1500, 3)).astype(np.float32)
    write_image(tmp_path / "big.tif", picture, pyramid=True, tile=256)
    with tifffile.TiffFile(tmp_path / "big.tif") as tif:
        levels = [level.asarray() for level in tif.series[0].levels]
    assert [level.shape[:2] for level in levels] == [(1000, 1500), (500, 750), (250, 375),
                                                     (125, 188)]  # fmt: skip
    _, client = serve(tmp_path / "big.tif")
    top = deepzoom.max_level((1000, 1500))
    assert np.array_equal(deep_zoom_image(client, "output"), rounded(picture))
    for k, level in enumerate(levels):
        tile = png_pixels(client.get(f"/output_files/{top - k}/0_0.png")[1])
        assert np.array_equal(tile, level[:256, :256]), k
    smallest = png_pixels(client.get(f"/output_files/{top - 4}/0_0.png")[1])
    assert np.array_equal(smallest, rounded(halved(levels[-1].astype(np.float64))))


def test_an_ome_zarr_is_served_as_output_dzi(tmp_path, serve):
    pytest.importorskip("ome_zarr", reason="ome-zarr is not installed")
    from daskstyle.io.images import write_image

    picture = np.random.default_rng(3).integers(0, 256, (600, 700, 3)).astype(np.float32)
    write_image(tmp_path / "big.ome.zarr", picture, tile=256)
    group = zarr.open_group(tmp_path / "big.ome.zarr", mode="r")
    levels = [np.moveaxis(np.asarray(group[f"s{k}"]), 0, -1) for k in range(3)]
    assert [level.shape[:2] for level in levels] == [(600, 700), (300, 350), (150, 175)]
    _, client = serve(tmp_path / "big.ome.zarr")
    assert np.array_equal(deep_zoom_image(client, "output"), rounded(picture))
    top = deepzoom.max_level((600, 700))
    for k, level in enumerate(levels):
        tile = png_pixels(client.get(f"/output_files/{top - k}/0_0.png")[1])
        assert np.array_equal(tile, level[:256, :256]), k
