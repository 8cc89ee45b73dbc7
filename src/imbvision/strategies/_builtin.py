"""Import every strategy module so that each registers its records."""

from . import losses, samplers, resampling, synthesis, mixing, heads, patch_heads  # noqa: F401
