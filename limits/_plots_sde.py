"""Figures of the sde capability, re-exported by ``limits.plots``."""
__all__ = []
