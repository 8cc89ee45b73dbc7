"""Heat maps where the object is: each feature block resampled by its measured effective centre (issue 22 §4)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imbvision.backbones import create_backbone
from imbvision.backbones.patch_geometry import resample_matrix
from imbvision.backbones.patches import PatchNet, grid_to_image, mask_to_grid

S = 224
#: blobs on patch-cell centres (stride 16), none of them a position the measurement used
ON_CELLS = [(96, 112), (128, 80), (112, 144), (80, 80), (144, 128)]
OFF_CELLS = [(70, 150), (100, 101), (117, 83), (141, 129), (158, 62)]


def _canvas(cy: float, cx: float, amp: float) -> np.ndarray:
    yy, xx = np.mgrid[0:S, 0:S]
    b = 128 + amp * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 3.0 ** 2))
    return np.clip(np.stack([b] * 3), 0, 255).astype(np.uint8)


def _responses(net: PatchNet, pos, amp: float) -> np.ndarray:
    x = torch.from_numpy(np.stack([_canvas(0, 0, 0)] + [_canvas(cy, cx, amp) for cy, cx in pos]))
    with torch.no_grad():
        f = net.eval()(x).numpy()
    return np.linalg.norm(f[1:] - f[:1], axis=1)  # (n, 14, 14): how much each patch changed


def _local_peak(m: np.ndarray, stride: int) -> tuple[float, float]:
    """Sub-cell peak: centroid of the 3x3 cells around the largest response (cell i at pixel stride*i)."""
    i, j = np.unravel_index(np.argmax(m), m.shape)
    ys, xs = slice(max(i - 1, 0), i + 2), slice(max(j - 1, 0), j + 2)
    w = m[ys, xs] - m[ys, xs].min()
    gy, gx = np.mgrid[ys, xs] * stride
    return float((w * gy).sum() / w.sum()), float((w * gx).sum() / w.sum())


@pytest.fixture(scope="module")
def lite0():
    return create_backbone("efficientnet_lite0")  # the offline ImageNet weights


@pytest.mark.parametrize("amp", [100.0, -100.0])  # a bright and a dark blob
def test_heat_map_peak_lands_on_a_small_blob(lite0, amp):
    net = PatchNet(lite0, "s16+s32")
    (fy, fx), (cy, cx) = net.centres
    assert 3 <= fy <= 9 and 3 <= fx <= 9 and 8 <= cy <= 18 and 8 <= cx <= 18  # measured: ~+6 and ~+13 px
    r = _responses(net, ON_CELLS, amp)
    for m, (by, bx) in zip(r, ON_CELLS):
        heat = grid_to_image(m, (0, 0, S, S), S, (S, S), sigma=0)
        assert np.unravel_index(np.argmax(heat), heat.shape) == (by, bx)  # the map's peak is on the blob
        # the patch head's mask labels use the same geometry: a disc at the blob fills that cell most
        yy, xx = np.mgrid[0:S, 0:S]
        grid = mask_to_grid((yy - by) ** 2 + (xx - bx) ** 2 <= 36, (0, 0, S, S), S, m.shape)
        assert np.unravel_index(np.argmax(grid), grid.shape) == np.unravel_index(np.argmax(m), m.shape)
    err = [np.subtract(_local_peak(m, 16), p) for m, p in zip(_responses(net, ON_CELLS + OFF_CELLS, amp),
                                                                ON_CELLS + OFF_CELLS)]
    assert np.abs(err).mean() <= 3.0 and np.abs(err).max() <= 5.0  # within 3 px on average (stride 16)


def test_without_the_centre_correction_the_peak_is_off_the_blob(lite0):
    """The control: the geometric centres (symmetric padding alone) put the response ~8 px down-right."""
    net = PatchNet(lite0, "s16+s32", centres=((0.0, 0.0), (0.0, 0.0)))
    r = _responses(net, ON_CELLS + OFF_CELLS, 100.0)
    err = np.array([np.subtract(_local_peak(m, 16), p) for m, p in zip(r, ON_CELLS + OFF_CELLS)])
    assert err.mean(axis=0).min() >= 5.0


def test_resample_matrix_reads_shifted_positions_and_holds_edges():
    x = np.arange(6, dtype=np.float32)
    np.testing.assert_allclose(resample_matrix(6, 6, 0.0, 1.0) @ x, x)
    np.testing.assert_allclose(resample_matrix(6, 6, 0.25, 1.0) @ x, [0.25, 1.25, 2.25, 3.25, 4.25, 5.0])
    np.testing.assert_allclose(resample_matrix(6, 3, 0.5, 0.5) @ x[:3], [0.5, 1.0, 1.5, 2.0, 2.0, 2.0])
    np.testing.assert_allclose(resample_matrix(4, 4, -1.0, 1.0) @ x[:4], [0, 0, 1, 2])
