"""Figures of the phase capability, re-exported by ``limits.plots``."""
__all__ = []
