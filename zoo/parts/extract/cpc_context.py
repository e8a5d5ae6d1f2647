"""CPC v2's representation extraction: per-patch latents, a masked context network, linear predictions k rows ahead.

Hénaff et al. (arXiv:1905.09272): "each input image is first divided into a grid of overlapping patches" and each
patch is encoded on its own into z_{i,j}; "a masked convolutional network is then applied to the grid of feature
vectors. The masks are such that the receptive field of each resulting context vector c_{i,j} only includes
feature vectors that lie above it in the image". The task is "predicting 'future' feature vectors z_{i+k,j} from
current context vectors c_{i,j}, where k > 0", linearly: ẑ_{i+k,j} = W_k c_{i,j}, contrasted with InfoNCE whose
"negative samples {z_l} are taken from other locations in the image and other images in the mini-batch".

Directions (section 4.1, "Prediction lengths and directions"): "whereas the model in van den Oord et al. (2018)
predicted each patch using only context from above, we repeatedly predict the same patch using context from below,
the right and the left [...], resulting in up to four times as many prediction tasks" ("adding bottom-up
predictions: +2% accuracy; using all four spatial directions: +2.5% accuracy"). Each direction here has its own
context network and its own W_k; the latent grid is flipped / transposed so that the direction becomes
top-to-bottom, and the same row-masked network runs on it. The targets (and the candidates) are shared.

Here the grid comes from the ``cpc`` augmentation preset, views of shape (B, rows, cols, C, patch, patch); the
similarity (``dot``) and the loss (``nce``) are the method row's ordinary parts.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple, cast

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from zoo.errors import ZooError
from zoo.parts.distributed import gather_with_grad, world
from zoo.parts.encoders.base import Encoder
from zoo.parts.extract.base import EXTRACTORS, Comparison, Extractor, check_views


class RowMaskedConv2d(nn.Conv2d):
    """A square, odd-sized, same-padded convolution that never looks at rows below the output's row.

    Kernel rows below the centre are zeroed in every forward pass; the centre row is fully visible, so an output
    at row i depends on inputs in rows <= i only (any column). Stacking such layers keeps that property exactly.
    """

    mask: Tensor  # buffer

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ZooError(f"a row-masked convolution needs an odd kernel size, got {kernel_size}")
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        mask = torch.ones(1, 1, kernel_size, kernel_size)
        mask[:, :, kernel_size // 2 + 1:, :] = 0.0
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, self.stride, self.padding)


class ContextBlock(nn.Module):
    """Residual block: ReLU -> 1x1 conv -> ReLU -> row-masked 3x3 conv -> ReLU -> 1x1 conv, added to the input."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(width, width, 1)
        self.masked = RowMaskedConv2d(width, width, 3)
        self.expand = nn.Conv2d(width, width, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.reduce(F.relu(x))
        h = self.masked(F.relu(h))
        return x + self.expand(F.relu(h))


class ContextNetwork(nn.Module):
    """PixelCNN-style context network g: latents (B, D, R, Q) -> contexts (B, context_dim, R, Q).

    "The context network [...] is a PixelCNN-style network" (Hénaff et al.): a 1x1 input projection then
    ``n_layers`` residual blocks with row-masked convolutions, so c_{i,j} depends on z in rows <= i only. No
    normalisation layers, so nothing couples positions (or images) except the masked convolutions themselves.
    """

    def __init__(self, in_dim: int, context_dim: int, n_layers: int) -> None:
        super().__init__()
        if min(in_dim, context_dim) < 1 or n_layers < 0:
            raise ZooError(f"context network needs positive widths and n_context_layers >= 0, got in_dim={in_dim}, "
                           f"context_dim={context_dim}, n_context_layers={n_layers}")
        self.project = nn.Conv2d(in_dim, context_dim, 1)
        self.blocks = nn.Sequential(*(ContextBlock(context_dim) for _ in range(n_layers)))

    def forward(self, z: Tensor) -> Tensor:
        return self.blocks(self.project(z))


# direction -> (transpose rows and columns, then flip the rows): the view of the grid in which that direction's
# context runs top-to-bottom. "top_down" is CPC v1's (context from above); "bottom_up" sees rows >= i and predicts
# upwards; "left_right" sees columns <= j and predicts to the right; "right_left" the mirror image.
DIRECTIONS: Dict[str, Tuple[bool, bool]] = {
    "top_down": (False, False),
    "bottom_up": (False, True),
    "left_right": (True, False),
    "right_left": (True, True),
}


def orient(grid: Tensor, direction: str) -> Tensor:
    """(B, D, R, Q) -> the grid seen from ``direction`` (its own inverse for every direction here)."""
    transpose, flip = DIRECTIONS[direction]
    if transpose:
        grid = grid.transpose(2, 3)
    return grid.flip(2) if flip else grid


@EXTRACTORS.register("cpc_context")
class CPCContextExtractor(Extractor):
    """CPC v2: encode every patch, run a masked context network per direction, predict targets ``1..steps`` ahead.

    For the ``top_down`` direction, each k in 1..``steps`` and every image b and grid position (i, j) with
    i + k < rows, the anchor is W_k c_{b,i,j} (``target_dim``) and its positive is the target of patch (b, i+k, j);
    the candidates are the targets (a 1x1 projection of z to ``target_dim``) of all patches of all images in the
    (gathered) batch. The other ``directions`` do the same on the flipped / transposed grid (``bottom_up``:
    positive (b, i-k, j); ``left_right``: (b, i, j+k); ``right_left``: (b, i, j-k)), with their own context network
    and W_k. One ``Comparison`` per direction, k and view (in that nesting, views outermost), each weighted
    1 / (directions * steps * views). Several views (``cpc`` preset with ``n_views``) are independent tasks: their
    patches are encoded in one call but never serve as each other's candidates.
    """

    def __init__(self, *, encoder: Encoder, context_dim: int = 512, target_dim: int = 64, steps: int = 3,
                 n_context_layers: int = 5, directions: Sequence[str] = ("top_down",)) -> None:
        super().__init__()
        if steps < 1:
            raise ZooError(f"cpc_context needs steps >= 1 (predictions 1..steps rows ahead), got {steps}")
        if target_dim < 1:
            raise ZooError(f"cpc_context needs target_dim >= 1, got {target_dim}")
        directions = [str(d) for d in ([directions] if isinstance(directions, str) else directions)]
        bad = [d for d in directions if d not in DIRECTIONS]
        if bad or not directions or len(set(directions)) != len(directions):
            raise ZooError(f"cpc_context directions must be distinct names from {list(DIRECTIONS)}, got {directions}")
        self.steps, self.directions = steps, tuple(directions)
        self.targets = nn.Conv2d(encoder.num_features, target_dim, 1)
        # one context network and one set of W_k per direction
        self.contexts = nn.ModuleDict({d: ContextNetwork(encoder.num_features, context_dim, n_context_layers)
                                       for d in self.directions})
        self.heads = nn.ModuleDict({d: nn.ModuleList(nn.Conv2d(context_dim, target_dim, 1) for _ in range(steps))
                                    for d in self.directions})

    @property
    def context(self) -> ContextNetwork:
        """The first direction's context network (the only one with the default ``directions``)."""
        return self.contexts[self.directions[0]]  # type: ignore[return-value]

    @property
    def predictors(self) -> nn.ModuleList:
        """The first direction's W_1 .. W_steps."""
        return self.heads[self.directions[0]]  # type: ignore[return-value]

    def latent_grid(self, encoder: Encoder, grid: Tensor) -> Tensor:
        """(B, R, Q, C, p, p) patches -> (B, D, R, Q) latents, all patches through one encoder call."""
        b, r, q = grid.shape[:3]
        z = encoder(grid.reshape(b * r * q, *grid.shape[3:]))
        return z.reshape(b, r, q, -1).permute(0, 3, 1, 2)

    def forward(self, encoder: Encoder, views: Sequence[Tensor]) -> List[Comparison]:
        views = list(views)
        check_views("cpc_context", views, hint="; give patch-grid views (B, rows, cols, C, patch, patch)")
        for v in views:
            if not isinstance(v, Tensor) or v.dim() != 6:
                shape = tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__
                raise ZooError(f"cpc_context expects patch-grid views of shape (B, rows, cols, C, patch, patch), "
                               f"got {shape}; use the 'cpc' augmentation preset")
        shapes = {tuple(v.shape) for v in views}
        if len(shapes) != 1:
            raise ZooError(f"cpc_context needs views of one shape, got {sorted(shapes)}")
        rows, cols = views[0].shape[1:3]
        for d in self.directions:
            ahead, what = (cols, "columns") if DIRECTIONS[d][0] else (rows, "rows")
            if self.steps >= ahead:
                raise ZooError(f"cpc_context steps={self.steps} needs a patch grid with more than {self.steps} "
                               f"{what}, got {ahead} (direction {d}); lower steps or use a larger image / smaller "
                               f"patch stride")
        z_all = self.latent_grid(encoder, torch.cat(views))  # one encoder call for every patch of every view
        comparisons: List[Comparison] = []
        for z in z_all.chunk(len(views)):
            comparisons += self._predict(z, weight=1.0 / (len(self.directions) * self.steps * len(views)))
        return comparisons

    def _predict(self, z: Tensor, weight: float) -> List[Comparison]:
        b, _, r, q = z.shape
        targets = self.targets(z).permute(0, 2, 3, 1).reshape(b * r * q, -1)  # (b, i, j) row-major
        candidates = gather_with_grad(targets)
        rank, _ = world()
        # where each patch's target sits in the row-major candidates, as a (B, 1, R, Q) grid to orient like z
        index = torch.arange(b * r * q, device=z.device).view(b, 1, r, q) + rank * b * r * q
        out = []
        for d in self.directions:
            zd, idx = orient(z, d), orient(index, d).reshape(-1)
            rd, qd = zd.shape[2:]
            context = self.contexts[d](zd)
            heads = cast(nn.ModuleList, self.heads[d])  # one W_k per step k
            for k, predictor in enumerate(heads, start=1):
                anchors = predictor(context[:, :, : rd - k]).permute(0, 2, 3, 1).reshape(b * (rd - k) * qd, -1)
                positives = idx[future_indices(b, rd, qd, k, device=z.device)]
                out.append(Comparison(anchors, candidates, positives=positives, weight=weight))
        return out


def future_indices(batch: int, rows: int, cols: int, k: int, offset: int = 0,
                   device: Optional[torch.device] = None) -> Tensor:
    """Index of target (b, i+k, j) in a row-major (b, i, j) flattening, for anchors (b, i, j) with i < rows - k,
    in the same row-major order; ``offset`` shifts into a gathered candidate set (this process's slice)."""
    b = torch.arange(batch, device=device).view(-1, 1, 1)
    i = torch.arange(rows - k, device=device).view(1, -1, 1)
    j = torch.arange(cols, device=device).view(1, 1, -1)
    return ((b * rows + i + k) * cols + j).reshape(-1) + offset
