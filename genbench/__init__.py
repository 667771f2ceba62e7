"""genbench: an evaluation-first benchmark for generative models of 2D medical images."""

__version__ = "0.1.0"
