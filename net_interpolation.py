#!/usr/bin/env python3
"""Blend a PSNR-oriented and a GAN model: theta = (1 - alpha) theta_PSNR + alpha theta_GAN.

A thin wrapper over `torch_sr.cli.net_interpolation`; installed as the console command `torch-sr-net-interpolation`.
"""
import sys

from torch_sr.cli.net_interpolation import main

if __name__ == "__main__":
    sys.exit(main())
