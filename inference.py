#!/usr/bin/env python3
"""Upscale images, folders or videos with a trained model.

A thin wrapper over `torch_sr.cli.inference`; installed as the console command `torch-sr-inference`.
"""
import sys

from torch_sr.cli.inference import main

if __name__ == "__main__":
    sys.exit(main())
