"""Training: head mode (one cell path), fine-tuning, and the run that writes a model folder.

Importing the package registers the feature representations beside ``global``
(``patches``, for the patch, normality and fusion heads).
"""

from . import patch_fit as _patch_fit  # noqa: F401 - registers the "patches" representation
