"""Handing a trained model to other runtimes: ONNX export (`torch_sr.deploy.onnx`).

This package's `__init__` stays free of torch: the command line shows these values in `--help`.
"""

OPSET = 17  # of 2022: current ONNX Runtime, TensorRT and OpenVINO releases read it
OPSETS = range(11, 21)  # what torch's TorchScript-based exporter writes for every generator here
