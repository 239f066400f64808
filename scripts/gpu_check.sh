#!/usr/bin/env bash
# One command for a GPU machine (about 8 minutes on one GPU): the CUDA tests, the fused-op and teacher
# benchmarks (our CUDA kernels vs the reference), one experiment=ffhq1024 distillation step at batch 8 on a
# random-weight config-f teacher (fused vs reference ops), and a 2-process DDP step when 2 GPUs exist.
# Prints one table at the end; logs and JSON go to ${OUT_DIR:-outputs/gpu_check}.
#
# Python: ${PYTHON}, else .venv/bin/python, else python3 (a machine whose torch is a CUDA build, with this
# repository's requirements installed; the repository itself is put on PYTHONPATH).
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON; elif [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec "$PY" benchmarks/gpu_check.py --out "${OUT_DIR:-outputs/gpu_check}" "$@"
