"""Face regions of the ViT patch grid and their embeddings (the blocks of the SC loss, Sec. 3.3).

The symmetric contrastive loss compares four regions of the face: the quadrants UL, UR, BL, BR of the
patch grid (rows top/bottom, columns left/right). A region's embedding is the mean of the patch
embeddings inside it. On a grid with an odd number of rows (columns) the middle row (column) lies on
the face's axis and belongs to neither half, so the left and right regions are exact mirror images of
each other's patch positions.
"""

from __future__ import annotations

import torch

#: Region names in the order of the region axis.
QUADRANTS = ("UL", "UR", "BL", "BR")
#: Each quadrant's mirror image about the vertical face axis (UL <-> UR, BL <-> BR).
MIRROR = {"UL": "UR", "UR": "UL", "BL": "BR", "BR": "BL"}


def quadrant_masks(grid: tuple[int, int]) -> torch.Tensor:
    """Boolean masks [4, rows * cols] of the UL, UR, BL, BR quadrants of a row-major patch grid."""
    rows, cols = grid
    if rows < 2 or cols < 2:
        raise ValueError(f"a {rows}x{cols} patch grid has no quadrants (need at least 2x2 patches)")
    r = torch.arange(rows).view(rows, 1).expand(rows, cols)
    c = torch.arange(cols).view(1, cols).expand(rows, cols)
    top, bottom = r < rows // 2, r >= (rows + 1) // 2
    left, right = c < cols // 2, c >= (cols + 1) // 2
    masks = torch.stack([top & left, top & right, bottom & left, bottom & right])
    return masks.reshape(4, rows * cols)


def region_embeddings(patches: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Mean patch embedding of each quadrant: patches [B, N, D] (row-major, N = rows * cols) -> [B, 4, D]."""
    if patches.ndim != 3 or patches.shape[1] != grid[0] * grid[1]:
        raise ValueError(f"expected patch embeddings [B, {grid[0] * grid[1]}, D], got {tuple(patches.shape)}")
    return torch.einsum("rn,bnd->brd", quadrant_weights(grid, patches.device, patches.dtype), patches)


_WEIGHTS: dict[tuple, torch.Tensor] = {}


def quadrant_weights(grid: tuple[int, int], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """[4, N] averaging weights of the quadrants, made once per (grid, device, dtype): copying the masks
    to a GPU at every step would wait for the GPU each time (none are kept under inference mode)."""
    key = (tuple(int(g) for g in grid), torch.device(device), dtype)
    if key in _WEIGHTS:
        return _WEIGHTS[key]
    weights = quadrant_masks(key[0]).to(device=device, dtype=dtype)
    weights = weights / weights.sum(dim=1, keepdim=True)
    if not torch.is_inference_mode_enabled():
        _WEIGHTS[key] = weights
    return weights


def positive_region_pairs(regions: tuple[str, ...] = QUADRANTS, *, mirror: bool = True) -> torch.Tensor:
    """[R, R] boolean matrix: region s is a positive partner of region r (the same, or the mirrored one)."""
    pairs = torch.eye(len(regions), dtype=torch.bool)
    if mirror:
        for i, name in enumerate(regions):
            partner = MIRROR.get(name)
            if partner in regions:
                pairs[i, regions.index(partner)] = True
    return pairs
