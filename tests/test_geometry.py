import dask
import dask.array as da
import numpy as np
import pytest
import zarr

from daskstyle.core import geometry
from daskstyle.engine import graph
from daskstyle.networks.catalog import DEFAULT_CONTENT_LAYER, DEFAULT_STYLE_LAYERS, get_network

VGG19 = get_network("vgg19")


def test_paper_halo_for_conv5_1_and_conv4_2():
    # The paper: 70 px of receptive radius at conv5_1, K_F = K_B = 80; 40 + 40 for conv4_2.
    assert geometry.scale_and_radius(VGG19.layer_kinds, VGG19.index("relu5_1")) == (16, 70)
    assert VGG19.halo((DEFAULT_CONTENT_LAYER, *DEFAULT_STYLE_LAYERS)) == geometry.Halo(80, 80, 16)
    assert VGG19.halo(("relu4_2",)) == geometry.Halo(40, 40, 8)


def test_vgg16_reaches_less_far_than_vgg19():
    halo = get_network("vgg16").halo((DEFAULT_CONTENT_LAYER, *DEFAULT_STYLE_LAYERS))
    assert (halo.forward, halo.total) == (64, 128)


def test_shallow_layers_have_small_halos():
    assert VGG19.halo(("relu1_1",)) == geometry.Halo(1, 1, 1)
    assert VGG19.halo(("relu1_1", "relu2_1")) == geometry.Halo(4, 4, 2)


def test_vgg_layer_names_match_torchvision_indices():
    names = VGG19.layer_names
    expected = {
        "relu1_1": 1,
        "relu2_1": 6,
        "relu3_1": 11,
        "relu4_1": 20,
        "relu4_2": 22,
        "relu5_1": 29,
    }
    assert {name: names.index(name) for name in expected} == expected


def test_tile_plan_covers_the_image_once():
    plan = geometry.TilePlan((177, 131), 16)
    assert plan.grid == (12, 9) and len(plan) == 108
    assert plan.chunks[0][-1] == 177 - 11 * 16 and plan.chunks[1][-1] == 131 - 8 * 16
    covered = [[0] * 131 for _ in range(177)]
    for tile in plan:
        for y in range(tile.y0, tile.y1):
            for x in range(tile.x0, tile.x1):
                covered[y][x] += 1
    assert all(c == 1 for row in covered for c in row)


def test_padded_tiles_are_clipped_at_the_border():
    plan = geometry.TilePlan((200, 264), 64)
    tiles = list(plan)
    assert tiles[0].padded(160, plan.shape) == (slice(0, 200), slice(0, 224))
    assert tiles[-1].padded(16, plan.shape) == (slice(176, 200), slice(240, 264))


@pytest.mark.parametrize("tile", [0, 8, 24, -16])
def test_tile_must_be_a_multiple_of_16(tile):
    with pytest.raises(ValueError, match="multiple of 16"):
        geometry.TilePlan((100, 100), tile)


def test_feature_crop_maps_core_pixels_to_cells():
    assert geometry.feature_crop(176, 352, 16, 16) == slice(10, 21)
    assert geometry.feature_crop(352, 377, 192, 16) == slice(10, 11)  # image edge: floor


def test_levels_double_from_r0_and_end_exactly_at_full_size():
    assert geometry.level_shapes((3000, 4000), 512) == [
        (384, 512), (768, 1024), (1536, 2048), (3000, 4000)
    ]  # fmt: skip
    assert geometry.level_shapes((300, 200), 512) == [(300, 200)]
    assert geometry.level_shapes((1024, 1024), 512) == [(512, 512), (1024, 1024)]


def test_block_cuts_name_the_chunks_a_window_touches():
    assert geometry.block_cuts((4, 4, 4), 2, 6) == (range(2), [slice(2, 4), slice(0, 2)])
    assert geometry.block_cuts((4, 0, 4), 4, 8) == (
        range(2, 3),
        [slice(0, 4)],
    )  # empty chunk skipped
    assert geometry.block_cuts((4, 4, 4), 0, 12)[0] == range(3)
    with pytest.raises(ValueError, match="not inside"):
        geometry.block_cuts((4, 4), 3, 9)


def test_windows_read_by_tasks_equal_numpy_slices(tmp_path):
    image = np.random.default_rng(0).uniform(size=(50, 37, 3))
    chunked = da.from_array(image, chunks=((7, 0, 20, 23), (16, 16, 5), 3))
    stored = zarr.create_array(tmp_path / "image.zarr", shape=image.shape, chunks=(16, 16, 3),
                               dtype=image.dtype)  # fmt: skip
    stored[...] = image
    windows = [
        (slice(0, 50), slice(0, 37)),
        (slice(5, 30), slice(15, 17)),
        (slice(27, 28), slice(36, 37)),
    ]
    for source in (graph.source(chunked), graph.source(stored), graph.source(image)):
        assert source.shape == (50, 37)
        for rows, cols in windows:
            (window,) = dask.compute(source.window(rows, cols))  # the chunks it needs
            np.testing.assert_array_equal(window.read(), image[rows, cols])


def test_concurrent_tiles_follow_the_measured_memory_of_a_tile():
    per_tile = geometry.TILE_BYTES_PER_PIXEL * (512 + 320) ** 2  # ~1.7 GB, as measured
    assert geometry.concurrent_tiles(10 * per_tile, 512, 160) == 10
    assert geometry.concurrent_tiles(10 * per_tile, 512, 160, itemsize=8) == 5
    assert geometry.concurrent_tiles(per_tile / 3, 512, 160) == 1  # never none


def _read_per_window(plan: geometry.TilePlan, depth: int, chunk: int) -> float:
    """Bytes of the whole chunks that the tiles' windows touch, over the windows' own."""
    sizes = [chunk] * (-(-plan.shape[0] // chunk))
    touched = needed = 0
    for tile in plan:
        rows, cols = tile.padded(depth, plan.shape)
        row_chunks, _ = geometry.block_cuts(sizes, rows.start, rows.stop)
        col_chunks, _ = geometry.block_cuts(sizes, cols.start, cols.stop)
        touched += len(row_chunks) * len(col_chunks) * chunk * chunk
        needed += (rows.stop - rows.start) * (cols.stop - cols.start)
    return touched / needed


@pytest.mark.parametrize("tile, depth", [(1376, 128), (2048, 160), (512, 160)])
def test_content_target_chunks_keep_what_windows_read_near_their_size(tile, depth):
    plan = geometry.TilePlan((4 * tile, 4 * tile), tile)
    assert _read_per_window(plan, depth, tile) > 2.5  # a chunk per tile: mostly waste
    assert _read_per_window(plan, depth, geometry.target_chunk(tile, 64)) < 1.45


@pytest.mark.parametrize("cells, channels, side", [(172, 512, 23), (2048, 64, 256), (16, 512, 16),
                                                   (256, 64, 64), (64, 512, 23)])  # fmt: skip
def test_content_target_chunks_are_an_eighth_of_a_tile_but_at_least_a_mib(cells, channels, side):
    assert geometry.target_chunk(cells, channels) == side
    if side < cells:
        assert side**2 * channels * 4 >= geometry.TARGET_CHUNK_BYTES
