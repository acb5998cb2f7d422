"""Applying a trained generator to whole images: tiling, channel layouts, image files."""
