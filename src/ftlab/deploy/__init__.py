"""After training: the exported model, metrics.json, the model card, predictions and ONNX export."""
