"""cl-sweeps: sweeps of continual-learning strategies for diffusion models."""

__version__ = "0.1.0"
