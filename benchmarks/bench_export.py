"""Runtime benchmark of an exported student: a thin wrapper around ``mobilestylegan-bench`` (the ``export.bench``
package).

    .venv/bin/python benchmarks/bench_export.py ffhq-1024 --threads 2 --runs 30 --compare-published --profile

Writes DIR/bench.md and DIR/bench.json (``--out``, default ``bench``); see ``--help`` for the conventions.
"""

from __future__ import annotations

import sys

from mobilestylegan.cli.bench import main

if __name__ == "__main__":
    sys.exit(main())
