"""The segmenter: AC inference on ONNX Runtime (TensorRT -> CUDA -> CPU)."""
