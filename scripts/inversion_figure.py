"""The inversion figure of the README: a photo (FFHQ-aligned), the shipped encoder's latent alone, the latent refined
by a few projection steps, and an edit of it; made by the toolkit's own commands, then set side by side.

    .venv/bin/python scripts/inversion_figure.py tests/fixtures/photos/astronaut.png --steps 30 \\
        --out docs/inversion_photo.png

runs, in a temporary folder (PHOTO's stem is NAME):

    mobilestylegan-project PHOTO --align --generator ffhq-1024 --steps 0 --out enc/
    mobilestylegan-project PHOTO --align --generator ffhq-1024 --steps STEPS --out ref/
    mobilestylegan-edit enc/NAME.npy --generator ffhq-1024 --direction ganspace:0 --strength 0 --show-target \\
        --size 256 --out e1/                                                  # the aligned photo | the encoder's face
    mobilestylegan-edit ref/NAME.npy --generator ffhq-1024 --direction DIRECTION --strength 0,STRENGTH \\
        --size 256 --out e2/                                                  # the refined face | the edit

and writes the two strips side by side; it prints each command's JSON line (PSNR, seconds).
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image


def _run(args: list[str]) -> str:
    print("$ " + shlex.join(args), flush=True)
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{args[0]} failed:\n{done.stderr}")
    return done.stdout


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("photo")
    p.add_argument("--generator", default="ffhq-1024")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--direction", default="ganspace:0")
    p.add_argument("--strength", default="2")
    p.add_argument("--out", required=True, help="the PNG to write")
    args = p.parse_args(argv)
    bin_dir = Path(sys.executable).parent
    project, edit = str(bin_dir / "mobilestylegan-project"), str(bin_dir / "mobilestylegan-edit")
    name = Path(args.photo).stem
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        common = [args.photo, "--align", "--generator", args.generator, "-q"]
        for folder, steps in (("enc", 0), ("ref", args.steps)):
            line = _run([project, *common, "--steps", str(steps), "--out", str(t / folder)]).strip().splitlines()[-1]
            print(f"  {folder}: {line}")
        show = ["--generator", args.generator, "--size", "256"]
        _run([edit, str(t / "enc" / f"{name}.npy"), *show, "--direction", "ganspace:0", "--strength", "0",
              "--show-target", "--out", str(t / "e1")])  # fmt: skip
        _run([edit, str(t / "ref" / f"{name}.npy"), *show, "--direction", args.direction, "--strength",
              f"0,{args.strength}", "--out", str(t / "e2")])  # fmt: skip
        strips = [np.asarray(Image.open(next((t / d).glob("*.png"))).convert("RGB")) for d in ("e1", "e2")]
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.concatenate(strips, axis=1)).save(out)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
