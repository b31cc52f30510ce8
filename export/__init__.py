"""ONNX export, TensorRT engines and the runtime ``Runner`` backends."""
