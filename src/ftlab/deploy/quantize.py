"""int8 dynamic quantization of an exported ONNX model with ONNX Runtime's own tool, and the ``onnx`` config node.

``onnx.quantize=int8`` (with ``export_onnx=true``) writes ``onnx/model.int8.onnx``: ``quantize_dynamic`` stores the
weights of MatMul / Gather nodes as int8 and quantizes activations per batch at run time, so no calibration data is
needed. ONNX Runtime recommends its ``quant_pre_process`` first; on graphs from ``torch.onnx`` (dynamo) its symbolic
shape inference stops ("Incomplete symbolic shape inference", onnxruntime 1.32), so the graph is quantized as
exported. Whether int8 is faster depends on the CPU's int8 instructions (VNNI): ``ftlab.deploy.variants`` measures it.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ftlab.core.checks import Checker, is_number

QUANTIZE_CHOICES = (None, "int8")
ONNX_OPTIONS = ("quantize", "tolerance")
INT8_FILE = "model.int8.onnx"


def check_onnx_options(c: Checker) -> None:
    """``onnx.quantize`` is null or int8 (and needs ``export_onnx=true``); ``onnx.tolerance`` is a number >= 0; no
    other key under ``onnx``."""
    if c.get("onnx") is None:
        return
    c.unknown_keys("onnx", ONNX_OPTIONS, "the onnx node")
    if c.choice("onnx.quantize", QUANTIZE_CHOICES) and c.get("onnx.quantize") and not c.get("export_onnx"):
        c.fail("onnx.quantize", "quantizes the exported ONNX model, so it needs export_onnx=true; valid: "
                                "export_onnx=true onnx.quantize=int8, or onnx.quantize=null")
    tolerance = c.get("onnx.tolerance")
    if not is_number(tolerance) or not tolerance >= 0:
        c.fail("onnx.tolerance", "must be a number >= 0 (points of the task metric the int8 model may lose: "
                                 "percentage points of accuracy / F1, percent of perplexity)")


def file_size(path: str | Path) -> int:
    """Bytes of an ONNX model, with the external weights file the exporter writes beside it (``<name>.data``)."""
    path = Path(path)
    data = path.with_name(path.name + ".data")
    return path.stat().st_size + (data.stat().st_size if data.exists() else 0)


def quantize_int8(model: str | Path, out: str | Path) -> Path:
    """Write the int8 dynamically quantized copy of the ONNX model ``model`` to ``out`` (one file)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # quantize_dynamic logs a recommendation to pre-process on the root logger; see the module docstring for why not.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        quantize_dynamic(str(model), str(out), weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)
    return Path(out)
