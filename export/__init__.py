"""Deployment: ONNX export, TensorRT engines, and one ``Runner`` interface for every backend.

Imports only ``core``; onnx, onnxruntime and tensorrt are imported inside the functions that need them.
"""
