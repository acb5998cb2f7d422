"""Image quality metrics as the SR papers compute them (PSNR/SSIM on the saved uint8 image, Y of BT.601).

LPIPS lives in `torch_sr.metrics.lpips` and needs the optional `lpips` package.
"""
from torch_sr.color import rgb_to_y
from torch_sr.metrics.psnr import calculate_psnr
from torch_sr.metrics.ssim import calculate_ssim

__all__ = ["rgb_to_y", "calculate_psnr", "calculate_ssim"]
