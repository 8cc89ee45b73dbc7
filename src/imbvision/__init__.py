"""imbvision: find a rare object in images.

Every class-imbalance remedy as a named, composable strategy, compared on
your own data with honest statistics.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
