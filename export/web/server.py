"""Serving a web export on the loopback interface, with the headers that let the page use WASM threads.

Browsers give a page ``SharedArrayBuffer`` (which onnxruntime-web's multi-threaded WASM needs) only when it is
cross-origin isolated: ``Cross-Origin-Opener-Policy: same-origin`` and ``Cross-Origin-Embedder-Policy:
require-corp`` on the document, and every resource same-origin. ``.wasm`` and ``.mjs`` get their MIME types
(streaming WASM compilation refuses anything but ``application/wasm``).
"""

from __future__ import annotations

import functools
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ISOLATION_HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
}
MIME_TYPES = {
    ".wasm": "application/wasm",
    ".mjs": "text/javascript",
    ".js": "text/javascript",
    ".onnx": "application/octet-stream",
    ".json": "application/json",
}


class IsolatedHandler(SimpleHTTPRequestHandler):
    """Static files of one directory, cross-origin isolated, never cached (a re-export is seen at once)."""

    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, **MIME_TYPES}

    def end_headers(self) -> None:
        for key, value in ISOLATION_HEADERS.items():
            self.send_header(key, value)
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's signature
        pass  # quiet: the command prints the address once


def make_server(directory: str | Path, host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
    """A server for ``directory`` bound to ``host:port`` (port 0: any free one); call ``serve_forever()``."""
    root = Path(directory)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a directory")
    handler = functools.partial(IsolatedHandler, directory=str(root))
    return ThreadingHTTPServer((host, port), handler)
