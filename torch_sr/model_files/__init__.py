"""Model files: a generator's architecture, hyper-parameters and weights in any published layout, read
safely and written atomically; and the transformations of a model file (export, deepen)."""
