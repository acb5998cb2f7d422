#!/usr/bin/env python3
"""Score models on benchmark datasets (PSNR/SSIM on the Y channel, as published).

A thin wrapper over `torch_sr.cli.test`; installed as the console command `torch-sr-test`.
"""
import sys

from torch_sr.cli.test import main

if __name__ == "__main__":
    sys.exit(main())
