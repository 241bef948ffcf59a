"""Tessera: a convolutional image autoencoder trained on patches, applied tile by tile.

The library has no Snakemake in it: every function takes plain values and paths, so it can be
used and tested on its own. The workflow's scripts are thin adapters around it.
"""

__version__ = "0.1.0"


class TesseraError(Exception):
    """A problem the user can fix; its message is shown to them as one line."""
