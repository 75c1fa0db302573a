"""Accuracy drift: measure a bundle against its full-precision source, gate it, report it."""
