"""Command-line entry points; the root scripts and console commands call their `main`."""
