"""``mobilestylegan-convert``: write any supported StyleGAN2 checkpoint in the native format."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mobilestylegan.cli.common import output_file_problem

EXAMPLES = """examples:
  mobilestylegan-convert stylegan2-ffhq-config-f.pkl ffhq.pt              # TF release pickle
  mobilestylegan-convert network-snapshot-025000.pkl ffhq.safetensors     # NVIDIA ada pickle
  mobilestylegan-convert 550000.pt ffhq.pt --only generator               # rosinality, drop D
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="mobilestylegan-convert",
        description="Convert a StyleGAN2 checkpoint (rosinality .pt, NVIDIA .pkl, TensorFlow .pkl, MobileStyleGAN "
        "split files, native) to the native format (.pt, or .safetensors by suffix). Nothing in the "
        "input file is executed.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", type=Path, help="checkpoint file (or directory of MobileStyleGAN split files)")
    p.add_argument("output", type=Path, help="output file: *.pt or *.safetensors")
    p.add_argument(
        "--only",
        choices=["all", "generator", "discriminator"],
        default="all",
        help="which networks to keep (default: all the input has)",
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from teacher.formats import CheckpointError, read_checkpoint
    from teacher.formats.native import save
    from teacher.fs import OutputPathError

    problem = output_file_problem(args.output, (".pt", ".safetensors"), args.force)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        ckpt = read_checkpoint(args.input)
        if args.only == "generator":
            ckpt.d_config = ckpt.d_state = None
        elif args.only == "discriminator":
            ckpt.g_config = ckpt.g_state = None
        if ckpt.g_config is None and ckpt.d_config is None:
            raise CheckpointError(f"{args.input} has no {args.only if args.only != 'all' else 'network'} to convert")
        save(args.output, ckpt)
    except (CheckpointError, OutputPathError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    parts = []
    if ckpt.g_config is not None:
        parts.append(
            f"generator {ckpt.g_config.img_resolution}px, w_dim {ckpt.g_config.w_dim}, "
            f"{ckpt.g_config.mapping_layers} mapping layers"
        )
    if ckpt.d_config is not None:
        parts.append(f"discriminator {ckpt.d_config.img_resolution}px")
    print(f"wrote {args.output} ({ckpt.source_format} -> native): " + "; ".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
