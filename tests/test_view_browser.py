"""The viewer's page in a real browser: headless Chromium from Debian's packages (``chromium``
and ``chromium-driver``, driven by selenium) loads ``daskstyle view`` of a finished run, shows
the canvas, and zooming in fetches full-resolution tiles whose pixels are the canvas's.

Skipped, saying why, where Chromium, its driver or selenium is missing (CI installs them).
"""

import base64
import io
import math
import shutil
import time

import dask.array as da
import numpy as np
import pytest
from PIL import Image

from daskstyle.frontends.view import deepzoom
from daskstyle.frontends.view.server import Viewer
from daskstyle.frontends.view.sources import open_source
from daskstyle.optimise import overview
from tests.conftest import final_canvas

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
WAIT_S = 60

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed "
                                "(pip install -e '.[test]')")  # fmt: skip
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER),
    reason="Chromium or its driver is missing: apt-get install chromium chromium-driver "
    "(Debian's builds; browsers downloaded from elsewhere do not run here)",
)


@pytest.fixture
def browser():
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1100,800", "--force-device-scale-factor=1"):  # fmt: skip
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_script_timeout(WAIT_S)
    yield driver
    driver.quit()


def wait_for(driver, script: str, what: str):
    """Poll ``script`` (a JavaScript expression) until it is truthy; fail naming ``what``."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        value = driver.execute_script(f"return {script};")
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"the page did not {what} within {WAIT_S} s")


LOADED = ("window.daskstyleView && daskstyleView.viewer.world.getItemCount() > 0 && "
          "daskstyleView.viewer.world.getItemAt(0).getFullyLoaded()")  # fmt: skip

#: Fetch each URL in the page, decode the PNG with the browser's own decoder, and hand back
#: its pixels as [width, height, RGBA bytes in base64].
DECODE = """
const [urls, done] = [arguments[0], arguments[arguments.length - 1]];
Promise.all(urls.map(async (url) => {
  const bitmap = await createImageBitmap(await (await fetch(url)).blob(),
                                         {colorSpaceConversion: "none", premultiplyAlpha: "none"});
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const context = canvas.getContext("2d");
  context.drawImage(bitmap, 0, 0);
  const bytes = context.getImageData(0, 0, bitmap.width, bitmap.height).data;
  let text = "";
  for (let i = 0; i < bytes.length; i += 8192) {
    text += String.fromCharCode(...bytes.subarray(i, i + 8192));
  }
  return [url, bitmap.width, bitmap.height, btoa(text)];
})).then(done, (error) => done(String(error)));
"""


def fetched_tiles(driver, level: int) -> list[str]:
    """The URLs of the tiles of Deep Zoom level ``level`` that the page has fetched."""
    return driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
        f".filter(n => n.includes('_files/{level}/'));"
    )


def check_tiles(driver, urls: list[str], canvas: np.ndarray) -> None:
    """The page's own PNG decoder gives each full-resolution tile the canvas's pixels."""
    decoded = driver.execute_async_script(DECODE, sorted(set(urls)))
    assert isinstance(decoded, list) and decoded, decoded
    size = deepzoom.TILE_SIZE
    for url, width, height, data in decoded:
        x, y = (int(n) for n in url.split("?")[0].split("/")[-1].split(".")[0].split("_"))
        pixels = np.frombuffer(base64.b64decode(data), np.uint8).reshape(height, width, 4)
        region = canvas[y * size : y * size + height, x * size : x * size + width]
        assert pixels.shape[:2] == region.shape[:2], url
        assert np.array_equal(pixels[..., :3], region), url
        assert (pixels[..., 3] == 255).all()


def rounded(canvas) -> np.ndarray:
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)


def test_a_screenshot_shows_the_canvas_of_a_real_run(finished_run, browser):
    _, workdir = finished_run
    canvas = rounded(final_canvas(workdir))
    viewer = Viewer(open_source(workdir)).start()
    try:
        browser.get(viewer.url)
        wait_for(browser, LOADED, "show the canvas")
        assert "level 2" in browser.find_element("id", "images").text
        assert "finished" in browser.find_element("id", "progress").text
        box = browser.execute_script(
            "const item = daskstyleView.viewer.world.getItemAt(0);"
            "const size = item.getContentSize();"
            "const a = item.imageToViewerElementCoordinates(new OpenSeadragon.Point(0, 0));"
            "const b = item.imageToViewerElementCoordinates(size);"
            "const r = document.getElementById('viewer').getBoundingClientRect();"
            "return [r.left + a.x, r.top + a.y, r.left + b.x, r.top + b.y];"
        )
        shot = Image.open(io.BytesIO(browser.get_screenshot_as_png())).convert("RGB")
        left, top, right, bottom = (round(v) for v in box)
        assert right - left > 200, "the canvas is drawn larger than its 80 px at home zoom"
        shown = np.asarray(shot.crop((left + 2, top + 2, right - 2, bottom - 2)), np.float64)
        expected = np.asarray(Image.fromarray(canvas).resize(
            (right - left, bottom - top), Image.Resampling.NEAREST
        ).crop((2, 2, right - left - 2, bottom - top - 2)), np.float64)  # fmt: skip
        assert shown.std() > 10, "the viewer shows a blank area"
        assert np.abs(shown.mean(axis=(0, 1)) - expected.mean(axis=(0, 1))).max() < 8
        assert np.abs(shown - expected).mean() < 25  # resampling apart, the canvas itself
        # drawn larger than 1:1, the canvas comes in full-resolution tiles already
        check_tiles(browser, fetched_tiles(browser, deepzoom.max_level(canvas.shape[:2])), canvas)
    finally:
        viewer.close()


def test_zooming_in_fetches_full_resolution_tiles_equal_to_the_canvas(synthetic_run, browser):
    workdir, _, canvas = synthetic_run
    top_level = deepzoom.max_level(canvas.shape[:2])
    viewer = Viewer(open_source(workdir)).start()
    try:
        browser.set_window_size(700, 500)  # the level drawn at under half its size
        browser.get(viewer.url)
        wait_for(browser, LOADED, "show the level")
        assert fetched_tiles(browser, top_level - 1)
        assert not fetched_tiles(browser, top_level)
        browser.execute_script(
            "const v = daskstyleView.viewer.viewport;"
            "v.zoomTo(v.imageToViewportZoom(2), null, true);"
        )
        urls = wait_for(browser, f"{LOADED} && performance.getEntriesByType('resource')"
                        f".some(e => e.name.includes('_files/{top_level}/'))",
                        "fetch full-resolution tiles after zooming in")  # fmt: skip
        assert urls
        wait_for(browser, LOADED, "load the tiles after zooming in")
        check_tiles(browser, fetched_tiles(browser, top_level), rounded(canvas))
    finally:
        viewer.close()


def test_the_page_follows_a_new_step(synthetic_run, browser):
    workdir, state, canvas = synthetic_run
    viewer = Viewer(open_source(workdir)).start()
    try:
        browser.set_window_size(700, 500)
        browser.get(viewer.url)
        wait_for(browser, LOADED, "show the level")
        assert browser.execute_script("return daskstyleView.shown.version") == "0.0"
        brighter = np.clip(canvas + 40, 0, 255)
        state.write(1, {"canvas": da.from_array(brighter, chunks=(160, 160, 3))})
        state.commit(step=1, current=1, history=[[40.0, 40.0, 1.0, 0.1]])
        overview.keep_up(state, most_share=math.inf)
        wait_for(browser, "daskstyleView.shown.version === '1.1'", "follow the new step")
        wait_for(browser, f"{LOADED} && daskstyleView.viewer.world.getItemCount() === 1",
                 "load the new step's tiles")  # fmt: skip
        level = deepzoom.max_level(canvas.shape[:2]) - 2  # 250 x 175 px: the overview's
        urls = [u for u in fetched_tiles(browser, level) if u.endswith("v=1.1")]
        assert urls
        decoded = browser.execute_async_script(DECODE, urls[:1])
        _, width, height, data = decoded[0]
        pixels = np.frombuffer(base64.b64decode(data), np.uint8).reshape(height, width, 4)
        quarter = brighter.astype(np.float64).reshape(175, 4, 250, 4, 3).mean(axis=(1, 3))
        assert np.array_equal(pixels[..., :3], rounded(quarter))
    finally:
        viewer.close()
