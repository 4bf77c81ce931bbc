"""``python -m agents.benchmark ...``: the benchmark's command line (:mod:`agents.benchmark.cli`)."""

import sys

from agents.benchmark.cli import main

if __name__ == "__main__":
    sys.exit(main())
