"""The onnxruntime-web files a web export ships (the page works offline: no CDN).

One pinned release, its WASM build only: the ES module, the Emscripten glue and the SIMD + threads WebAssembly
binary. They come from the npm tarball, checked against npm's sha512 integrity string, and are kept in
``cache_root()/onnxruntime-web/VERSION/``; each copy into an export is checked against the files' sha256.

Where they come from, in order:

1. ``$MOBILESTYLEGAN_ORT_WEB``: the tarball (``npm pack onnxruntime-web@VERSION``) or a folder holding the three
   files (``node_modules/onnxruntime-web/dist``), for machines without network;
2. the cache;
3. ``npm pack`` into the cache (needs npm and the registry; ``python -m export.web.ort_files`` does it ahead of
   time, which is how CI makes the tests run offline).
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from export.errors import ExportError
from teacher.fs import cache_root, replace_dir, sha256_file

VERSION = "1.30.0"
PACKAGE = f"onnxruntime-web@{VERSION}"
# npm's dist.integrity of the tarball (`npm view onnxruntime-web@1.30.0 dist.integrity`).
INTEGRITY = "sha512-q0y+JrrtukXSzsBWEMccVfqX25LRmosXHF+CaRJmg8pZClzcV7svNc4rKY3jL02Vb7QmRMDs1SigqR4CXAfKYQ=="
FILES = {  # dist/ file -> sha256
    "ort.wasm.min.mjs": "219e6a1fc8a9938268d18efca3c91d310bd2f4a59bbd13744df5b2b7fc6cee3b",
    "ort-wasm-simd-threaded.mjs": "e13f7f94fc51b4ca72b12faeb1ee95f4ace6dfbc8939bc718aabdc0a27c4299b",
    "ort-wasm-simd-threaded.wasm": "3398c10d07d229bd91b364548e130e0e51a8e5704b88c7c083ebbeb78842dee2",
}
ENV = "MOBILESTYLEGAN_ORT_WEB"
NOTICE = (
    f"ONNX Runtime Web v{VERSION}, Copyright (c) Microsoft Corporation, MIT License "
    "(https://github.com/microsoft/onnxruntime). Files: " + ", ".join(FILES) + "\n"
)
HOW = (
    f"set ${ENV} to the tarball made by `npm pack {PACKAGE}` (or to its package/dist folder), or run "
    "`python -m export.web.ort_files` once on a machine with npm and the npm registry"
)


def cache_dir() -> Path:
    return cache_root() / "onnxruntime-web" / VERSION


def locate(fetch: bool = True) -> Path:
    """A folder holding the verified runtime files (see the module docstring for the order)."""
    given = os.environ.get(ENV)
    if given:
        path = Path(given).expanduser()
        if path.is_file():
            return _from_tarball(path)
        if path.is_dir():
            _verify(path, f"${ENV}={path}")
            return path
        raise ExportError(f"${ENV}={path} is neither the onnxruntime-web tarball nor a folder; {HOW}")
    cached = cache_dir()
    if all((cached / f).is_file() for f in FILES):
        _verify(cached, f"the cache {cached}")
        return cached
    if not fetch:
        raise ExportError(f"onnxruntime-web {VERSION} is not in the cache ({cached}); {HOW}")
    return fetch_into_cache()


def copy_into(dest: Path) -> list[str]:
    """Copy the runtime files into ``dest`` (created); returns their names."""
    src = locate()
    dest.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        shutil.copyfile(src / name, dest / name)
    _verify(dest, "the copied files")
    (dest / "NOTICE.txt").write_text(NOTICE)
    return [*FILES, "NOTICE.txt"]


def fetch_into_cache() -> Path:
    """``npm pack`` the pinned release, check its integrity and unpack its three files into the cache."""
    npm = shutil.which("npm")
    if npm is None:
        raise ExportError(
            f"the web export needs onnxruntime-web {VERSION}'s files and npm is not installed to fetch "
            f"them (apt-get install npm); or {HOW}"
        )
    with tempfile.TemporaryDirectory(prefix="ort-web.") as tmp:
        try:
            subprocess.run(
                [npm, "pack", PACKAGE, "--pack-destination", tmp, "--silent"],
                check=True,
                capture_output=True,
                text=True,
                timeout=600,
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as err:
            detail = (getattr(err, "stderr", "") or "").strip().splitlines()[-1:] or [str(err)]
            raise ExportError(f"npm pack {PACKAGE} failed ({detail[0]}); {HOW}") from None
        tarball = next(Path(tmp).glob("*.tgz"), None)
        if tarball is None:
            raise ExportError(f"npm pack {PACKAGE} wrote no tarball; {HOW}")
        return _from_tarball(tarball)


def _from_tarball(tarball: Path) -> Path:
    """Check ``tarball`` against :data:`INTEGRITY` and unpack its files into the cache (atomically)."""
    algo, _, want = INTEGRITY.partition("-")
    with open(tarball, "rb") as fh:
        got = base64.b64encode(hashlib.file_digest(fh, algo).digest()).decode()
    if got != want:
        raise ExportError(
            f"{tarball} is not onnxruntime-web {VERSION} (its {algo} differs from npm's integrity); {HOW}"
        )
    final = cache_dir()
    final.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{VERSION}.", dir=final.parent))
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            for name in FILES:
                member = tar.getmember(f"package/dist/{name}")
                with tar.extractfile(member) as src, open(stage / name, "wb") as dst:
                    shutil.copyfileobj(src, dst)
        _verify(stage, str(tarball))
        replace_dir(stage, final)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return final


def _verify(folder: Path, what: str) -> None:
    for name, digest in FILES.items():
        path = folder / name
        if not path.is_file():
            raise ExportError(f"{what} lacks {name} of onnxruntime-web {VERSION}; {HOW}")
        if sha256_file(path) != digest:
            raise ExportError(f"{path} is not the file of onnxruntime-web {VERSION} (sha256 differs); {HOW}")


def main() -> int:
    """``python -m export.web.ort_files``: fetch the runtime files into the cache now (needs npm and network)."""
    try:
        path = locate(fetch=True)
    except ExportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"onnxruntime-web {VERSION}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
