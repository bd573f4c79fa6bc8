"""Stage 5: the served file — torch → ONNX with a parity check (onnx_export.py), the serving rewrites
(serving_graph.py), quantization (quantize.py), the dense route (dense_route.py) and the byte count
of what was compressed (measure.py)."""
