"""The SRGAN discriminator (Ledig et al. 2017), built for 96x96 HR patches."""
from __future__ import annotations

from torch_sr.archs.vgg_discriminator import VGGStyleDiscriminator


class SRGANDiscriminator(VGGStyleDiscriminator):
    """Eight 3x3 convs of `num_channels` x (1, 1, 2, 2, 4, 4, 8, 8), stride 2 on every second, BN
    (not on the first) and LeakyReLU 0.2, then dense `fc_features` (1024), LeakyReLU, dense 1.

    This is the VGG-style discriminator with SRGAN's sizes, so it shares its code: raw logits of
    shape (N, 1) (the loss applies the sigmoid/BCE), and any patch size, the features being
    average-pooled to the grid the dense layer was built for (the identity at `input_size`).
    """

    def __init__(self, img_channels: int = 3, num_channels: int = 64, fc_features: int = 1024, input_size: int = 96):
        if num_channels < 1 or fc_features < 1:
            raise ValueError(
                f"num_channels and fc_features must be positive, got num_channels={num_channels}, "
                f"fc_features={fc_features}"
            )
        widths = [num_channels * m for m in (1, 1, 2, 2, 4, 4, 8, 8)]
        super().__init__(img_channels, widths, [fc_features], input_size)
        self.hparams = dict(
            img_channels=img_channels, num_channels=num_channels, fc_features=fc_features, input_size=input_size
        )
