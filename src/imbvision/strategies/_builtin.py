"""Import every strategy module so that each registers its records."""

from . import losses, samplers, resampling, synthesis, mixing, heads  # noqa: F401
