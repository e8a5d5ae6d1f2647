"""AMDIM's representation extraction: NCE between feature maps of two views at several scales.

AMDIM (Bachman et al., arXiv:1906.00910) is "based on maximizing mutual information between features extracted
from multiple views of a shared context". Falcon & Cho (arXiv:2009.00104) put it as: AMDIM "uses the idea of
comparing representations across views from feature maps extracted from intermediate layers of a convolutional
neural network". The paper's multiscale objective sums three prediction tasks between the two views, each the
average of its two directions: the global 1x1 vector of one view predicts every 5x5 location (1-5) and every
7x7 location (1-7) of the other view, and a single randomly sampled 5x5 location predicts every 5x5 location of
the other view (5-5). For each positive pair the negatives are all locations of the other images' target maps.

Here a task is a string ``"st"`` of two map indices (0 = ``r1`` global 1x1, 1 = ``r5`` 5x5, 2 = ``r7`` 7x7 by
default): the paper's objective is ``tasks="01, 02, 11"``. The scoring (dot product / sqrt(D), tanh-clipped at
20) and the NCE with its score penalty are the method row's similarity and loss parts, not this module.
"""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import torch
from torch import Tensor

from zoo.errors import ZooError
from zoo.parts.distributed import gather_with_grad, world
from zoo.parts.encoders.base import Encoder
from zoo.parts.extract.base import EXTRACTORS, Comparison, Extractor, check_views

Task = Tuple[int, int]


def _index_help(maps: Sequence[str]) -> str:
    return ", ".join(f"{i} = {name}" for i, name in enumerate(maps))


def parse_tasks(tasks: str | Sequence[str], maps: Sequence[str]) -> List[Task]:
    """``"01, 02, 11"`` -> ``[(0, 1), (0, 2), (1, 1)]``: comma-separated (source, target) map index pairs.

    Every token must be exactly two digits, each an index into ``maps``; empty tokens, other characters,
    out-of-range digits and repeated tasks raise ``ZooError`` naming the bad token and the valid indices.
    A list of tokens (``["01", "02"]``, as YAML may give) is accepted too.
    """
    if isinstance(tasks, (list, tuple)) and all(isinstance(t, str) for t in tasks):
        text = ",".join(tasks)
    elif isinstance(tasks, str):
        text = tasks
    else:
        raise ZooError(f"multi_map tasks must be a string like '01, 02, 11', got {tasks!r}")
    valid = f"each task is two map indices 'st' (source, target) with indices {_index_help(maps)}"
    if not text.strip():
        raise ZooError(f"multi_map got no tasks in {text!r}; {valid}")
    parsed: List[Task] = []
    for raw in text.split(","):
        token = raw.strip()
        if len(token) != 2 or not token.isdigit() or not token.isascii():
            shown = repr(token) if token else "an empty task"
            raise ZooError(f"multi_map task {shown} in {text!r} is malformed; {valid}")
        pair = (int(token[0]), int(token[1]))
        if max(pair) >= len(maps):
            raise ZooError(f"multi_map task {token!r} in {text!r} names a map index out of range; {valid}")
        if pair in parsed:
            raise ZooError(f"multi_map task {token!r} is listed twice in {text!r}")
        parsed.append(pair)
    return parsed


def source_vectors(fmap: Tensor) -> Tensor:
    """(B, D, H, W) -> (B, D): the global vector of a 1x1 map, else one uniformly random location per image.

    AMDIM's local-to-local task uses a single sampled location of the source map per image as the anchor;
    the sample is drawn from torch's global RNG (seed it for reproducibility).
    """
    b, d = fmap.shape[:2]
    flat = fmap.reshape(b, d, -1)
    if flat.shape[2] == 1:
        return flat[:, :, 0]
    where = torch.randint(flat.shape[2], (b,), device=fmap.device)
    return flat[torch.arange(b, device=fmap.device), :, where]


def target_locations(fmap: Tensor) -> Tuple[Tensor, Tensor]:
    """(B, D, H, W) -> candidates (world * B*H*W, D) gathered across processes, and positives (B, H*W).

    Row ``b*H*W + k`` of this process's slice is location k (row-major) of image b; the positives of local image
    b are its own H*W locations, offset by ``rank * B*H*W`` inside the gathered candidates. Every other row, i.e.
    every location of every other image in the global batch, is a negative.
    """
    b, d, h, w = fmap.shape
    local = fmap.permute(0, 2, 3, 1).reshape(b * h * w, d)
    rank, _ = world()
    hw = h * w
    positives = (torch.arange(b, device=fmap.device)[:, None] * hw
                 + torch.arange(hw, device=fmap.device)[None, :] + rank * b * hw)
    return gather_with_grad(local), positives


@EXTRACTORS.register("multi_map")
class MultiMapExtractor(Extractor):
    """AMDIM's multiscale NCE tasks between two views (arXiv:1906.00910); no parameters of its own.

    ``tasks``: comma-separated ``"st"`` pairs, source map index s and target map index t into ``maps``
    (default ``("r1", "r5", "r7")``: 0 = global 1x1, 1 = 5x5 local, 2 = 7x7 local). AMDIM's objective is
    ``"01, 02, 11"`` (its 1-5, 1-7 and 5-5 predictions). Each task yields two comparisons, view 1 -> view 2 and
    view 2 -> view 1, of weight 0.5 each (the paper averages the two directions, then sums the tasks):

    * anchors (B, D): the source vector of each image of the source view (see ``source_vectors``);
    * candidates (world*B*H*W, D): every location of the other view's target map, gathered across processes;
    * positives (B, H*W): the target-map locations of the same image, each contrasted on its own against the
      locations of all other images (the nce loss's several-positives mode).
    """

    def __init__(self, *, encoder: Encoder, tasks: str | Sequence[str] = "01, 02, 11",
                 maps: Sequence[str] = ("r1", "r5", "r7")) -> None:
        super().__init__()
        if isinstance(maps, str) or not all(isinstance(m, str) for m in maps):
            raise ZooError(f"multi_map maps must be a list of feature map names, got {maps!r}")
        self.maps = tuple(maps)
        if not 1 <= len(self.maps) <= 10 or len(set(self.maps)) != len(self.maps):
            raise ZooError(f"multi_map needs 1 to 10 distinct map names, got {list(self.maps)}")
        missing = [m for m in self.maps if m not in encoder.map_names]
        if missing:
            raise ZooError(f"multi_map maps {missing} are not feature maps of the encoder "
                           f"{type(encoder).__name__}, which has {list(encoder.map_names)}")
        self.tasks = parse_tasks(tasks, self.maps)
        used = {self.maps[i] for task in self.tasks for i in task}
        self.needed = tuple(m for m in encoder.map_names if m in used)  # encoder order, each map once

    def extra_repr(self) -> str:
        names = ", ".join(f"{self.maps[s]}->{self.maps[t]}" for s, t in self.tasks)
        return f"tasks=[{names}]"

    def check_batch_size(self, global_batch: int) -> None:
        """Negatives come from the other images of the global batch, so it needs at least two."""
        if global_batch < 2:
            raise ZooError(f"multi_map needs a global batch of at least 2 images for negatives, got {global_batch}")

    def forward(self, encoder: Encoder, views: Sequence[Tensor]) -> List[Comparison]:
        check_views("multi_map", views, exactly=2, hint="; use the amdim augmentation")
        shapes = {tuple(v.shape) for v in views}
        if len(shapes) != 1:
            raise ZooError(f"multi_map needs two views of one shape, got {sorted(shapes)}")
        batch = views[0].shape[0]
        feats = encoder.forward_features(torch.cat(list(views)), self.needed)
        per_view = {name: fmap.split(batch) for name, fmap in feats.items()}
        for name, fmap in feats.items():
            if fmap.dim() != 4:
                raise ZooError(f"multi_map needs (B, C, H, W) feature maps, got {tuple(fmap.shape)} for {name!r}")
        targets: Dict[Tuple[int, str], Tuple[Tensor, Tensor]] = {}  # each target map gathered once per view
        comparisons: List[Comparison] = []
        for s, t in self.tasks:
            src_name, trg_name = self.maps[s], self.maps[t]
            if feats[src_name].shape[1] != feats[trg_name].shape[1]:
                raise ZooError(f"multi_map task {s}{t} compares {src_name!r} ({feats[src_name].shape[1]} channels) "
                               f"with {trg_name!r} ({feats[trg_name].shape[1]} channels); they must match")
            for a, b in ((0, 1), (1, 0)):
                if (b, trg_name) not in targets:
                    targets[(b, trg_name)] = target_locations(per_view[trg_name][b])
                candidates, positives = targets[(b, trg_name)]
                anchors = source_vectors(per_view[src_name][a])
                comparisons.append(Comparison(anchors, candidates, positives=positives, weight=0.5))
        return comparisons
