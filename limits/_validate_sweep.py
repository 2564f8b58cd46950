"""Validation checks of the sweep capability (registered with ``limits.validate.check``)."""
from .validate import Result, check  # noqa: F401
