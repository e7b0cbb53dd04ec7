"""`python -m ftlab.onnx_export`: the command-line entry point of `ftlab.deploy.release` (ONNX export, int8)."""
import sys

from ftlab.deploy.release import main

if __name__ == "__main__":
    sys.exit(main())
