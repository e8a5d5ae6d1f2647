"""AMDIM's score penalty sees the raw scores, before the tanh clip (issue 15, item 2).

AMDIM's released cost (amdim-public costs.py) and pl_bolts' AmdimNCELoss compute, on raw = a . b / sqrt(D):
    penalty = 0.05 * mean(raw^2),   NCE on 20 * tanh(raw / 20).
The references below are that formula and its derivative written out with ``math``, on raw scores far beyond the
clip (40 and 300), where a penalty on clipped scores would be capped near 20^2.
"""

import math

import pytest
import torch

import zoo
from zoo.parts.extract import Comparison

CLIP, WEIGHT = 20.0, 0.05
RAW = [[40.0, -300.0, 2.0], [300.0, 1.5, -40.0]]  # raw scores; row i's positive is POSITIVES[i]
POSITIVES = [0, 2]


def reference_loss_and_grad(raw):
    """AMDIM's cost on a (N, M) list of raw scores and its gradient with respect to each raw score."""
    n, m = len(raw), len(raw[0])
    count = n * m
    loss = WEIGHT * sum(s * s for row in raw for s in row) / count
    grad = [[2.0 * WEIGHT * s / count for s in row] for row in raw]
    for i, row in enumerate(raw):
        clipped = [CLIP * math.tanh(s / CLIP) for s in row]
        top = max(clipped)
        lse = top + math.log(sum(math.exp(c - top) for c in clipped))
        loss += (lse - clipped[POSITIVES[i]]) / n
        for j, s in enumerate(row):
            d_clipped = (math.exp(clipped[j] - lse) - (1.0 if j == POSITIVES[i] else 0.0)) / n
            grad[i][j] += d_clipped * (1.0 - math.tanh(s / CLIP) ** 2)  # d clip(s) / ds = sech^2(s / c)
    return loss, grad


@pytest.mark.parametrize("method", ["amdim", "yadim"])
def test_row_penalises_raw_scores_before_the_clip(method):
    row = zoo.get_method(method)
    similarity = zoo.REGISTRIES["similarity"].build(row.similarity.name, row.similarity.kwargs)
    loss_fn = zoo.REGISTRIES["loss"].build(row.loss.name, row.loss.kwargs)
    # D = 4, so scores = a . b / 2: unit anchors pick out twice the wanted raw score from each candidate
    anchors = torch.eye(4)[:2]
    candidates = torch.zeros(3, 4)
    for i in range(2):
        for j in range(3):
            candidates[j, i] = 2.0 * RAW[i][j]
    candidates.requires_grad_(True)
    comp = Comparison(anchors, candidates, positives=torch.tensor(POSITIVES))
    loss = loss_fn(similarity(anchors, candidates), comp)
    loss.backward()

    want_loss, want_grad = reference_loss_and_grad(RAW)
    assert want_loss > 0.05 * 2 * 300**2 / 6  # the penalty dominates: the two 300s alone
    assert loss.item() == pytest.approx(want_loss, rel=1e-5)
    # d loss / d candidates[j] = sum_i d loss / d raw[i][j] * anchors[i] / sqrt(D)
    expected = torch.zeros(3, 4)
    for i in range(2):
        for j in range(3):
            expected[j, i] = want_grad[i][j] / 2.0
    assert torch.allclose(candidates.grad, expected, rtol=1e-5, atol=1e-7)


def test_nce_loss_clips_for_the_softmax_and_penalises_raw():
    raw = torch.tensor(RAW, requires_grad=True)
    loss = zoo.REGISTRIES["loss"].build("nce", {"tanh_clip": CLIP, "score_penalty": WEIGHT})(
        raw, Comparison(None, None, positives=torch.tensor(POSITIVES)))
    loss.backward()
    want_loss, want_grad = reference_loss_and_grad(RAW)
    assert loss.item() == pytest.approx(want_loss, rel=1e-5)
    assert torch.allclose(raw.grad, torch.tensor(want_grad), rtol=1e-5, atol=1e-7)
    assert raw.grad[1, 0].item() == pytest.approx(2 * WEIGHT * 300 / 6, rel=1e-4)  # only the penalty moves 300
    with pytest.raises(zoo.ZooError, match=r"^loss 'nce': tanh_clip is 0.0; it must be null or a number > 0$"):
        zoo.REGISTRIES["loss"].build("nce", {"tanh_clip": 0.0})
