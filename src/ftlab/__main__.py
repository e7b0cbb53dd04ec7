"""``python -m ftlab <command>``: the ``ftlab`` command without its console script."""

import sys

from ftlab.cli import main

sys.exit(main())
