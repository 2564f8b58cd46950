"""Figures of the resnet_scaling capability, re-exported by ``limits.plots``."""
__all__ = []
