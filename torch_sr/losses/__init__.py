"""Training losses as small modules and functions that the trainer weights and sums.

`content` (pixel), `perceptual` (feature maps of a frozen network, plus Gram/style), `adversarial`
(discriminator and generator losses on raw logits), `total_variation`, and `total` (the weighted
sum of named terms, e.g. ESRGAN's L_percep + 5e-3 L_G^Ra + 1e-2 L_1).
"""
