"""`python -m ftlab.predict`: the command-line entry point of `ftlab.deploy.predict`."""
import sys

from ftlab.deploy.predict import main

if __name__ == "__main__":
    sys.exit(main())
