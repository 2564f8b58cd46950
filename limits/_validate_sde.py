"""Validation checks of the sde capability (registered with ``limits.validate.check``)."""
from .validate import Result, check  # noqa: F401
