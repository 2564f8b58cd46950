"""Validation checks of the phase capability (registered with ``limits.validate.check``)."""
from .validate import Result, check  # noqa: F401
