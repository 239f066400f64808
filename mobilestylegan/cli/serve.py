"""``mobilestylegan-serve``: a web export on http://127.0.0.1, cross-origin isolated (WASM threads work)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from export.web.server import make_server

EXAMPLES = """examples:
  mobilestylegan-serve exported/ffhq-web                 # then open http://127.0.0.1:8000/
  mobilestylegan-serve exported/ffhq-web --port 8080
The page needs Cross-Origin-Opener-Policy / Cross-Origin-Embedder-Policy headers for multi-threaded WASM, which
opening index.html from the disk does not give it; this server sends them and binds the loopback interface only.
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mobilestylegan-serve",
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("directory", type=Path, help="a web export directory (holds index.html)")
    p.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1 (default 8000; 0: any free port)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not (args.directory / "index.html").is_file():
        print(
            f"mobilestylegan-serve: error: {args.directory} holds no index.html (not a web export directory)",
            file=sys.stderr,
        )
        return 2
    try:
        server = make_server(args.directory, "127.0.0.1", args.port)
    except OSError as err:
        print(f"mobilestylegan-serve: error: cannot listen on 127.0.0.1:{args.port}: {err.strerror}", file=sys.stderr)
        return 2
    host, port = server.server_address[:2]
    print(f"serving {args.directory} at http://{host}:{port}/ (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
