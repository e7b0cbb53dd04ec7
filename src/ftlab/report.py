"""`python -m ftlab.report`: the command-line entry point of `ftlab.sweeps.report`."""
import sys

from ftlab.sweeps.report import main

if __name__ == "__main__":
    sys.exit(main())
