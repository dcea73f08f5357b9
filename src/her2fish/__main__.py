"""``python -m her2fish``: the same as the ``her2fish`` command."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
