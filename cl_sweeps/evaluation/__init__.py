"""Evaluation of a continually trained diffusion model: FID, class distribution, compute cost."""
