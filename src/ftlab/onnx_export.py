"""`python -m ftlab.onnx_export`: the command-line entry point of `ftlab.deploy.onnx`."""
import sys
from ftlab.deploy.onnx import main
if __name__ == "__main__":
    sys.exit(main())
