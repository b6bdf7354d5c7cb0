"""The reader server process: `python -m rnnserve.importers.reader_server` (started by `isolation.run_isolated`).

Importing the `rnnserve.importers` package preloads the container readers, and h5py and numpy with them, so
the children the server forks start warm.
"""

from __future__ import annotations

import sys

from rnnserve.importers.isolation import serve


def main() -> None:
    serve(sys.stdin, sys.stdout)


if __name__ == "__main__":
    main()
