"""Validation checks of the montecarlo capability (registered with ``limits.validate.check``)."""
from .validate import Result, check  # noqa: F401
