"""Generator and discriminator architectures; `registry` maps names to classes."""
