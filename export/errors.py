"""The exporter's one error type. A leaf module (standard library only): the Chromium driver, the onnxruntime-web
fetcher and the targets raise it without importing torch."""

from __future__ import annotations


class ExportError(Exception):
    """An export that cannot be made or failed a check; the message is one line for the user."""
