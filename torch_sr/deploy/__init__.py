"""Handing a trained model to other runtimes: ONNX export (`torch_sr.deploy.onnx`).

This package's `__init__` stays free of torch: the command line shows these values in `--help`.
"""

OPSET = 17  # read by ONNX Runtime >= 1.14, TensorRT >= 8.6, OpenVINO >= 2022.3 and pnnx
OPSETS = range(11, 21)  # what torch's TorchScript-based exporter writes for every generator here
