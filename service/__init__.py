"""Online side: serves the ONNX model directories the pipeline builds. Never imports torch or compression."""
