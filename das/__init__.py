"""Differentiable architecture search for 1-D inverse problems."""

__version__ = "0.4.1"
