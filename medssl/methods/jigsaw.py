"""Jigsaw (Noroozi & Favaro 2016, simplified): predict which permutation shuffled an image's tiles.

``view1`` (B, C, H, W) is cut into a ``grid`` x ``grid`` set of ``t x t`` tiles, ``t = min(H, W) //
grid`` (pixels beyond ``grid * t`` stay where they are). Each image gets a random index ``k`` of a
fixed set of ``num_permutations`` permutations of the ``grid**2`` tiles (all 24 for a 2 x 2 grid;
for 3 x 3, ``num_permutations`` distinct ones drawn once with a fixed seed, identity first); tile
slot ``i`` of the shuffled image receives tile ``perm[i]`` of the original. The reassembled image
is encoded (one image, not the paper's per-tile siamese network: any encoder works) and a linear
head ``(B, F) -> (B, num_permutations)`` predicts ``k`` with cross-entropy. ``view2`` is not used.
Images only.
"""

from __future__ import annotations

import itertools
import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from medssl.errors import ConfigError, DataError
from medssl.methods.base import SSLMethod, register_method, require_sizes
from medssl.methods.pixel_decoder import image_channels, require_images


def permutation_set(grid: int, k: int, seed: int = 0) -> torch.Tensor:
    """``(k, grid**2)`` int64: ``k`` distinct tile permutations, the identity first (fixed by ``seed``)."""
    n = grid * grid
    if k > math.factorial(n):
        raise ConfigError(f"jigsaw num_permutations={k} exceeds the {math.factorial(n)} orderings of a {grid}x{grid} grid")
    if math.factorial(n) <= 5040:  # small grids: all orderings in lexicographic order, the first k
        return torch.tensor(list(itertools.islice(itertools.permutations(range(n)), k)), dtype=torch.long)
    g = torch.Generator().manual_seed(seed)
    perms, seen = [tuple(range(n))], {tuple(range(n))}
    while len(perms) < k:
        p = tuple(torch.randperm(n, generator=g).tolist())
        if p not in seen:
            seen.add(p)
            perms.append(p)
    return torch.tensor(perms, dtype=torch.long)


def to_tiles(x: torch.Tensor, grid: int) -> tuple[torch.Tensor, int]:
    """``x (B, C, H, W)`` -> tiles ``(B, grid**2, C, t, t)`` (row-major) and the tile side ``t``."""
    t = min(x.shape[-2:]) // grid
    b, c = x.shape[:2]
    crop = x[:, :, : grid * t, : grid * t].reshape(b, c, grid, t, grid, t)
    return crop.permute(0, 2, 4, 1, 3, 5).reshape(b, grid * grid, c, t, t), t


def shuffle_tiles(x: torch.Tensor, perms: torch.Tensor, grid: int) -> torch.Tensor:
    """``x (B, C, H, W)``, ``perms (B, grid**2)`` -> ``(B, C, H, W)`` where tile slot ``i`` holds the
    original tile ``perms[b, i]``; pixels outside the ``grid * t`` square are kept."""
    tiles, t = to_tiles(x, grid)
    b, c = x.shape[:2]
    moved = tiles[torch.arange(b, device=x.device)[:, None], perms]  # (B, n, C, t, t)
    square = moved.reshape(b, grid, grid, c, t, t).permute(0, 3, 1, 4, 2, 5).reshape(b, c, grid * t, grid * t)
    out = x.clone()
    out[:, :, : grid * t, : grid * t] = square
    return out


@register_method("jigsaw")
class Jigsaw(SSLMethod):
    """``training_loss``: cross-entropy of the tile permutation index of each shuffled ``view1``."""

    pairing: ClassVar[str] = "augment"
    family: ClassVar[str] = "pretext task"
    summary: ClassVar[str] = "predicts which of a fixed set of tile orders shuffled an image's grid of tiles"
    lightly_parts: ClassVar[str] = ""
    supported_domains: ClassVar[tuple[str, ...]] = ("imaging",)

    def __init__(self, encoder: nn.Module, grid: int = 2, num_permutations: int | None = None) -> None:
        super().__init__(encoder)
        image_channels("jigsaw", encoder)
        if grid not in (2, 3):
            raise ConfigError(f"jigsaw grid must be 2 or 3 (tiles per side), got {grid}")
        require_sizes("jigsaw", num_permutations=num_permutations)
        k = num_permutations or (24 if grid == 2 else 100)
        if k < 2:
            raise ConfigError("jigsaw num_permutations must be at least 2 (one class is nothing to predict)")
        self.grid = grid
        self.register_buffer("perms", permutation_set(grid, k), persistent=False)
        self.head = nn.Linear(int(encoder.num_features), k)

    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Cross-entropy on ``batch["view1"]`` ``(B, C, H, W)`` with tiles shuffled by random permutations."""
        x = batch["view1"]
        require_images("jigsaw", x)
        if min(x.shape[-2:]) < 2 * self.grid:
            raise DataError(f"jigsaw grid {self.grid} needs images of at least {2 * self.grid} px, got {tuple(x.shape[-2:])}")
        labels = torch.randint(0, len(self.perms), (x.shape[0],), device=x.device)
        return F.cross_entropy(self.head(self.encoder(shuffle_tiles(x, self.perms[labels], self.grid))), labels)
