#!/usr/bin/env python3
"""Train a super-resolution model from a JSON config (PSNR pre-training, then GAN training).

A thin wrapper over `torch_sr.cli.train`; installed as the console command `torch-sr-train`.
"""
import sys

from torch_sr.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
