"""The peers' way, as the reference daskstyle's speed is measured against: Gatys iterations on
the whole image in plain PyTorch (one forward and backward of the whole canvas, torch's Adam
on the canvas), with the same network, weights and layers as ``daskstyle run``.

    python pipelines/whole_image_pytorch.py --size 1024 --network hed-vgg16 --steps 4

Prints each step's seconds and the process's peak RSS so far, then the median of the steps
after the first and the peak RSS per pixel. Seeded random pictures: time does not depend on
what they show.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import statistics
import time

import numpy as np
import torch

from daskstyle.networks import catalog
from daskstyle.networks.catalog import (
    DEFAULT_CONTENT_LAYER,
    DEFAULT_STYLE_LAYERS,
    build_features,
    get_network,
    load_weights,
    read_state_dict,
    resolve_weights,
)


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _prepared(image: np.ndarray, network) -> torch.Tensor:
    x = torch.as_tensor(image, dtype=torch.float32).permute(2, 0, 1)[None] / network.value_range
    if network.bgr:
        x = x.flip(1)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (network.mean, network.std))
    return ((x - mean) / std).contiguous(memory_format=torch.channels_last)


def _features(model, x: torch.Tensor, wanted: dict[int, str]) -> dict[str, torch.Tensor]:
    out = {}
    for index, layer in enumerate(model):
        x = layer(x)
        if index in wanted:
            out[wanted[index]] = x
    return out


def _gram(feature: torch.Tensor) -> torch.Tensor:
    phi = feature.float().reshape(feature.shape[1], -1)
    return phi @ phi.T / phi.shape[1]


def measure(
    size: int,
    network_name: str,
    steps: int,
    precision: str = "exact",
    random_weights: bool = False,
    echo=lambda line: None,
) -> dict:
    """Seconds of each whole-image step and the process's peak RSS (MiB) after them."""
    network = get_network(network_name)
    layers = (DEFAULT_CONTENT_LAYER, *DEFAULT_STYLE_LAYERS)
    wanted = {network.index(name): name for name in layers}
    model = build_features(network, max(wanted))
    state = (catalog.random_weights(network_name) if random_weights
             else read_state_dict(resolve_weights(network, None)[1]))  # fmt: skip
    load_weights(model, state, network, "its file")
    model = model.eval().requires_grad_(False).to(memory_format=torch.channels_last)
    rng = np.random.default_rng(0)
    content = rng.uniform(0, 255, (size, size, 3))
    style = rng.uniform(0, 255, (size // 2, size // 2, 3))
    autocast = (torch.autocast("cpu", torch.bfloat16) if precision == "bf16"
                else contextlib.nullcontext())  # fmt: skip
    with torch.no_grad(), autocast:
        target = _features(model, _prepared(content, network), wanted)[DEFAULT_CONTENT_LAYER]
        grams = {name: _gram(f) for name, f in
                 _features(model, _prepared(style, network), wanted).items()}  # fmt: skip
    canvas = _prepared(content, network).requires_grad_(True)
    optimiser = torch.optim.Adam([canvas], lr=1.0)
    seconds = []
    for step in range(1, steps + 1):
        start = time.perf_counter()
        optimiser.zero_grad()
        with autocast:
            features = _features(model, canvas, wanted)
            content_error = features[DEFAULT_CONTENT_LAYER].float() - target.float()
            loss = content_error.square().mean() / 2
            for name in DEFAULT_STYLE_LAYERS:
                loss = loss + 10 * (_gram(features[name]) - grams[name]).square().sum() / 4
        loss.backward()
        optimiser.step()
        seconds.append(time.perf_counter() - start)
        echo(f"step {step}: {seconds[-1]:.2f} s, peak RSS {_peak_mib():,.0f} MiB")
    return dict(seconds=seconds, peak=_peak_mib())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024, help="canvas side in px (1024)")
    parser.add_argument("--network", default="hed-vgg16")
    parser.add_argument("--steps", type=int, default=4, help="(4; the first is a warm-up)")
    parser.add_argument("--precision", choices=("exact", "bf16"), default="exact")
    parser.add_argument("--random-weights", action="store_true",
                        help="seeded random weights (the time is the same; no file needed)")  # fmt: skip
    args = parser.parse_args()
    result = measure(args.size, args.network, args.steps, args.precision, args.random_weights,
                     echo=lambda line: print(line, flush=True))  # fmt: skip
    later = result["seconds"][1:] or result["seconds"]
    peak = result["peak"]
    print(f"whole-image PyTorch, {args.network}, {args.size}x{args.size}, {args.precision}, "
          f"{torch.get_num_threads()} threads: {statistics.median(later):.2f} s per step "
          f"(median of {len(later)}), peak RSS {peak:,.0f} MiB "
          f"({peak * 2**20 / args.size**2:,.0f} bytes per pixel)")  # fmt: skip


if __name__ == "__main__":
    main()
