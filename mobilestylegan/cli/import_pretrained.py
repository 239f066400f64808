"""``mobilestylegan-import``: a published student into a native student checkpoint."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mobilestylegan.cli.common import output_file_problem
from mobilestylegan.io.checkpoint import save_student
from mobilestylegan.io.pretrained import INSTALL_HINT, PRETRAINED, import_published_ir
from teacher.formats import openvino_ir
from teacher.formats.common import CheckpointError
from teacher.fs import OutputPathError

EXAMPLES = f"""examples:
  mobilestylegan-import ffhq-1024 ffhq1024_student.pt             # fused, ready for sampling / export
  mobilestylegan-import ffhq-1024 ffhq1024_unfused.pt --unfused   # run-time demodulation (needs scipy)
  mobilestylegan-import --list

The source files come from the random-face package; install it with:
  {INSTALL_HINT}
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="mobilestylegan-import",
        description="Convert a published MobileStyleGAN student (OpenVINO IR) into a native student checkpoint "
        "(.pt, readable with mobilestylegan.io.checkpoint.load_student). Nothing is downloaded.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("name", nargs="?", help=f"published model: {', '.join(sorted(PRETRAINED))}")
    p.add_argument("output", nargs="?", type=Path, help="output file (*.pt)")
    p.add_argument(
        "--unfused",
        action="store_true",
        help="keep demodulation as a run-time computation (style_inv fitted by NNLS; needs scipy)",
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")
    p.add_argument("--list", action="store_true", help="list the known published models and exit")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for key in sorted(PRETRAINED):
            print(f"{key}: {PRETRAINED[key].description} (needs: {PRETRAINED[key].install_hint})")
        return 0
    if args.name is None or args.output is None:
        print("error: give a model name and an output file (see --help)", file=sys.stderr)
        return 2
    if args.name not in PRETRAINED:
        print(f"error: unknown model {args.name!r}; known: {', '.join(sorted(PRETRAINED))}", file=sys.stderr)
        return 2
    problem = output_file_problem(args.output, (".pt",), args.force)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        try:
            files = openvino_ir.random_face_files()
        except CheckpointError as err:
            raise CheckpointError(f"{err}. Install command: {PRETRAINED[args.name].install_hint}") from err
        print(f"importing {files['synthesis_xml']} ...", file=sys.stderr)
        G = import_published_ir(files["synthesis_xml"], files["mapping_xml"], unfused=args.unfused)
        G.info["pretrained_name"] = args.name
        save_student(args.output, G, G.info)
    except (CheckpointError, OutputPathError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    n = sum(p.numel() for p in G.synthesis.parameters())
    print(
        f"wrote {args.output}: {args.name}, {'unfused' if args.unfused else 'fused'} student, "
        f"{n:,} synthesis parameters"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
