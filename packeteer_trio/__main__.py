"""``python -m packeteer_trio``: the command line (see :mod:`packeteer_trio.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
