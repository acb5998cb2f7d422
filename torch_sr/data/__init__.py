"""Data: MATLAB-compatible resizing, degradations, the dataset catalogue and the SR datasets.

Import the sub-modules directly (`torch_sr.data.imresize`, `.degradations`, `.catalogue`,
`.datasets`); albumentations is imported only when a dataset with augmentations is built.
"""
