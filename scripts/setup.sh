#!/usr/bin/env bash
# Create .venv (if missing) and install the toolkit with its test extras, CPU-only.
# torch is pinned to 2.13.0, which resolves to the CPU build on a machine without CUDA.
# random-face ships the published MobileStyleGAN FFHQ student and the real StyleGAN2 FFHQ mapping
# network as OpenVINO IR; it is installed without its dependencies (we only read its data files).
# Options: --faces adds the face detector and landmark models (`mobilestylegan-project --align`); --identity adds
# FaceNet for the projection's identity distance (opt-in: its training data's licence is non-commercial).
set -euo pipefail
cd "$(dirname "$0")/.."
FACES=0
IDENTITY=0
for arg in "$@"; do
    case "$arg" in
        --faces) FACES=1 ;;
        --identity) IDENTITY=1 ;;
        *) echo "usage: bash scripts/setup.sh [--faces] [--identity]" >&2; exit 2 ;;
    esac
done
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[dev]"
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps random-face==2021.7.21.1
if [ "$FACES" = 1 ]; then
    .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps --require-hashes \
        -r scripts/faces-requirements.txt
fi
if [ "$IDENTITY" = 1 ]; then
    .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps --require-hashes \
        -r scripts/identity-requirements.txt
fi
.venv/bin/python -c "import torch, teacher; print(f'ready: torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}')"
