"""Paint the built-in example once per artistic control: docs/controls.md's row of pictures.

    python pipelines/controls_row.py [--out docs/controls] [--r0 192]

Each picture is one `daskstyle run` (hed-vgg16, two levels of 192 and 384 px) whose command
is printed with its wall time; the pictures go to OUT/<name>.png (docs/controls.md shows them).
"""

import argparse
import shlex
import tempfile
import time
from pathlib import Path

from daskstyle.frontends import cli

DATA = Path(__file__).resolve().parents[1] / "daskstyle" / "data"
CONTENT, STYLE, STYLE2 = (DATA / f"example_{name}.png" for name in ("content", "style", "style2"))

#: name -> the options after `daskstyle run` (pictures given by their repository paths)
CONTROLS = {
    "plain": [CONTENT, STYLE],
    "colours_kept": [CONTENT, STYLE, "--colors", "content"],
    "two_styles": [CONTENT, STYLE, STYLE2, "--style-blend", "1,1"],
    "strokes_x2": [CONTENT, STYLE, "--style-scale", "2"],
    "smooth": [CONTENT, STYLE, "--tv-weight", "500"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/controls"))
    parser.add_argument("--r0", type=int, default=192)
    parser.add_argument("--only", nargs="*", choices=list(CONTROLS), help="these controls only")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.only or CONTROLS:
        options = [*map(str, CONTROLS[name]), "--network", "hed-vgg16", "--r0", str(args.r0),
                   "-o", str(args.out / f"{name}.png")]  # fmt: skip
        shown = " ".join(shlex.quote(o.replace(str(DATA.parents[1]) + "/", "")) for o in options)
        with tempfile.TemporaryDirectory(prefix="daskstyle-controls-") as workdir:
            start = time.perf_counter()
            code = cli.main(["run", *options, "--cluster", "threads", "--workdir", workdir])
        print(f"{name}: exit {code}, {time.perf_counter() - start:.0f} s: daskstyle run {shown}")


if __name__ == "__main__":
    main()
