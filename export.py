#!/usr/bin/env python3
"""Export a model: a small float16 model file to ship, and/or an ONNX file to deploy.

A thin wrapper over `torch_sr.cli.export`; installed as the console command `torch-sr-export`.
"""
import sys

from torch_sr.cli.export import main

if __name__ == "__main__":
    sys.exit(main())
