"""Benchmark the per-frame path of every available backend (``lia-live bench``; see ``lia_live/cli/bench.py``)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lia_live.cli.bench import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
