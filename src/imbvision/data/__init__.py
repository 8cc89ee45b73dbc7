"""Data sources, decoding, checks, splits and the procedural demo set."""

from .records import Dataset, ImageRecord, labels_of, groups_of
from .decode import load_image, load_image_array, load_mask

__all__ = ["Dataset", "ImageRecord", "labels_of", "groups_of", "load_image", "load_image_array", "load_mask"]
