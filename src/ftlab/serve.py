"""`python -m ftlab.serve`: the command-line entry point of `ftlab.serving.server` (LitServe, Prometheus metrics)."""
import sys

from ftlab.serving.server import main

if __name__ == "__main__":
    sys.exit(main())
