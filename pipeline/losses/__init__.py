"""Self-supervised losses (one concept per module)."""

from pipeline.losses.barlow_twins import BarlowTwinsLoss, BarlowTwinsOutput

__all__ = ["BarlowTwinsLoss", "BarlowTwinsOutput"]
