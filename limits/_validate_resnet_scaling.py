"""Validation checks of the resnet_scaling capability (registered with ``limits.validate.check``)."""
from .validate import Result, check  # noqa: F401
