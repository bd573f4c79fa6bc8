"""What the offline pipeline and the online service both rely on: the model
directory contract (file names, ONNX input/output names, manifest schema) and
a torch-free ONNX encoder. Neither side imports the other; both import this."""
