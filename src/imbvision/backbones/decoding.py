"""How a file is decoded for each kind of features: the one rule that training and prediction share.

A large JPEG is decoded at a reduced scale (Pillow's draft mode, see
:func:`~imbvision.data.decode.load_image_array`), chosen from the smallest side the features
need. That side differs between the parts of a model's input, so each part is decoded at its
own side, in training (:func:`~imbvision.backbones.embed_dataset`,
:func:`~imbvision.backbones.patches.patch_features`) and in prediction
(:class:`~imbvision.model.Model`, :mod:`imbvision.explain`) alike:

* ``"global"`` – the whole-image view and its ``tiles × tiles`` crops (pooled embeddings):
  ``image_size × max(1, tiles)``, so every tile still has at least ``image_size`` pixels a side;
* ``"patches"`` – the patch-feature canvas: ``image_size`` (the canvas is ``image_size`` square).

A 1000×1000 JPEG at ``image_size=224`` and ``tiles=2`` is decoded at 500×500 for the global view
and at 250×250 for the patch canvas. Decoding both parts at one side would score other pixels than
training saw.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ConfigError

__all__ = ["PARTS", "min_side", "decode_part", "decode_part_and_size"]

#: The parts of a model's input that are decoded separately (names as the representations).
PARTS = ("global", "patches")


def min_side(part: str, image_size: int, tiles: int = 0) -> int:
    """The ``min_side`` a file is decoded with for ``part`` (see the module docstring).

    Parameters
    ----------
    part
        ``"global"`` (whole image and tiles) or ``"patches"`` (patch canvas).
    image_size
        The network's square input side, pixels.
    tiles
        The tile grid of the global view (0: none); the patch canvas ignores it.

    Raises
    ------
    ConfigError
        For another ``part``.
    """
    if part == "global":
        return int(image_size) * max(1, int(tiles or 0))
    if part == "patches":
        return int(image_size)
    raise ConfigError(f"decoding part {part!r} invalid; valid: {', '.join(PARTS)}")


def decode_part(path: str | Path, part: str, image_size: int, tiles: int = 0) -> np.ndarray:
    """``(H, W, 3)`` uint8 pixels of ``path`` as decoded for ``part`` (checked; a :class:`BadFileError` names it)."""
    from ..data.decode import load_image_array

    return load_image_array(path, min_side=min_side(part, image_size, tiles))


def decode_part_and_size(path: str | Path, part: str, image_size: int, tiles: int = 0
                         ) -> tuple[np.ndarray, tuple[int, int]]:
    """:func:`decode_part` and the file's full ``(width, height)`` (before any draft scaling)."""
    from ..data.decode import load_image_and_size

    return load_image_and_size(path, min_side=min_side(part, image_size, tiles))
