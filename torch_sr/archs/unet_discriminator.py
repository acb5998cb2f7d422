"""Real-ESRGAN's U-Net discriminator with spectral normalisation: a real/fake logit per pixel.

A VGG-style discriminator judges a whole patch with one number; the U-Net judges every pixel with
context from three downsamplings, and spectral normalisation bounds how fast its verdicts can
change (Wang et al., "Real-ESRGAN", 2021). On its own it did not keep a pixel-shuffle generator
free of a grid pattern here (see `torch_sr/weights/gan_x4.md`): pair it with the GAN stage's
`d_shift` and the checkerboard loss. Parameter names are those of Real-ESRGAN's released
`RealESRGAN_x4plus_netD.pth` (`conv1.weight_orig`, `.weight_u`, `.weight_v`), so its state dict loads.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm


class UNetDiscriminatorSN(nn.Module):
    """conv0 -> three stride-2 4x4 convs -> three bilinear x2 + 3x3 conv steps (with skips) -> two
    3x3 convs -> one logit per input pixel, shape (N, 1, H, W). H and W must be multiples of 8.

    All but the first and last convs are spectrally normalised; LeakyReLU 0.2 throughout.
    """

    def __init__(self, img_channels: int = 3, num_feat: int = 64, skip_connection: bool = True):
        super().__init__()
        if num_feat < 1:
            raise ValueError(f"num_feat must be positive, got {num_feat}")
        self.hparams = dict(img_channels=img_channels, num_feat=num_feat, skip_connection=skip_connection)
        self.skip_connection = skip_connection
        f = num_feat
        self.conv0 = nn.Conv2d(img_channels, f, 3, 1, 1)
        self.conv1 = spectral_norm(nn.Conv2d(f, f * 2, 4, 2, 1, bias=False))
        self.conv2 = spectral_norm(nn.Conv2d(f * 2, f * 4, 4, 2, 1, bias=False))
        self.conv3 = spectral_norm(nn.Conv2d(f * 4, f * 8, 4, 2, 1, bias=False))
        self.conv4 = spectral_norm(nn.Conv2d(f * 8, f * 4, 3, 1, 1, bias=False))
        self.conv5 = spectral_norm(nn.Conv2d(f * 4, f * 2, 3, 1, 1, bias=False))
        self.conv6 = spectral_norm(nn.Conv2d(f * 2, f, 3, 1, 1, bias=False))
        self.conv7 = spectral_norm(nn.Conv2d(f, f, 3, 1, 1, bias=False))
        self.conv8 = spectral_norm(nn.Conv2d(f, f, 3, 1, 1, bias=False))
        self.conv9 = nn.Conv2d(f, 1, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2] % 8 or x.shape[-1] % 8:
            raise ValueError(f"UNetDiscriminatorSN needs H and W divisible by 8, got {tuple(x.shape[-2:])}")
        act = F.leaky_relu
        x0 = act(self.conv0(x), 0.2)
        x1 = act(self.conv1(x0), 0.2)
        x2 = act(self.conv2(x1), 0.2)
        x3 = act(self.conv3(x2), 0.2)
        up = x3
        for conv, skip in ((self.conv4, x2), (self.conv5, x1), (self.conv6, x0)):
            up = act(conv(F.interpolate(up, scale_factor=2, mode="bilinear", align_corners=False)), 0.2)
            if self.skip_connection:
                up = up + skip
        out = act(self.conv7(up), 0.2)
        out = act(self.conv8(out), 0.2)
        return self.conv9(out)
