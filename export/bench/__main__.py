"""``python -m export.bench SPEC.json``: the benchmark's worker process (see :mod:`export.bench.worker`)."""

import sys

from export.bench.worker import main

sys.exit(main())
