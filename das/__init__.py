"""Differentiable architecture search for 1-D inverse problems."""
