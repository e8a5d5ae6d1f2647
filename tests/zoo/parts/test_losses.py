"""Losses and similarities against values computed independently in the test."""

import math

import pytest
import torch

from zoo.parts.extract import Comparison, pair_views
from zoo.parts.losses import NCELoss
from zoo.parts.similarity import CosineSimilarity, DotSimilarity


def nce_by_loops(scores, positives, exclude=None):
    total = 0.0
    for i in range(len(scores)):
        denom = 0.0
        for j in range(len(scores[i])):
            if exclude is not None and j == exclude[i]:
                continue
            denom += math.exp(scores[i][j])
        total += -(scores[i][positives[i]] - math.log(denom))
    return total / len(scores)


def test_nce_matches_explicit_loop():
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(6, 9, generator=g) * 3
    positives = torch.tensor([0, 3, 8, 2, 2, 5])
    loss = NCELoss()(scores, Comparison(None, None, positives))
    assert loss.item() == pytest.approx(nce_by_loops(scores.tolist(), positives.tolist()), rel=1e-5)


def test_nce_excludes_self_similarity_nt_xent():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(8, 5, generator=g)  # 2 views x 4 samples
    (comp,) = pair_views(z, 2, "all_views")
    scores = CosineSimilarity(temperature=0.5)(comp.anchors, comp.candidates)
    loss = NCELoss()(scores, comp)
    expected = nce_by_loops(scores.tolist(), comp.positives.tolist(), comp.exclude.tolist())
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert comp.positives.tolist() == [4, 5, 6, 7, 0, 1, 2, 3]


def test_nce_score_penalty_adds_mean_square():
    scores = torch.tensor([[1.0, -2.0], [0.5, 3.0]])
    comp = Comparison(None, None, torch.tensor([0, 1]))
    plain = NCELoss()(scores, comp)
    penalised = NCELoss(score_penalty=0.1)(scores, comp)
    assert (penalised - plain).item() == pytest.approx(0.1 * (1 + 4 + 0.25 + 9) / 4, rel=1e-6)


def test_cross_view_pairs_both_directions():
    z = torch.arange(12.0).view(6, 2)  # 2 views x 3 samples
    comps = pair_views(z, 2, "cross_view")
    assert len(comps) == 2 and all(c.weight == 0.5 for c in comps)
    assert torch.equal(comps[0].anchors, z[:3]) and torch.equal(comps[0].candidates, z[3:])
    assert torch.equal(comps[1].anchors, z[3:]) and comps[1].positives.tolist() == [0, 1, 2]


def test_dot_similarity_values():
    a = torch.tensor([[1.0, 2.0], [0.0, -1.0]])
    b = torch.tensor([[3.0, 4.0], [1.0, 1.0], [-2.0, 0.5]])
    expected = torch.tensor([[11.0, 3.0, -1.0], [-4.0, -1.0, -0.5]])
    assert torch.allclose(DotSimilarity()(a, b), expected)
    assert torch.allclose(DotSimilarity(temperature=2.0, scale_by_sqrt_dim=True)(a, b), expected / 2 / math.sqrt(2))
    clipped = DotSimilarity(tanh_clip=5.0)(a, b)
    assert torch.allclose(clipped, 5.0 * torch.tanh(expected / 5.0))
    assert clipped.abs().max() < 5.0


def test_cosine_similarity_values():
    a = torch.tensor([[3.0, 4.0]])
    b = torch.tensor([[6.0, 8.0], [-4.0, 3.0], [0.0, -2.0]])
    assert torch.allclose(CosineSimilarity(temperature=0.5)(a, b), torch.tensor([[2.0, 0.0, -1.6]]))


def test_bad_similarity_arguments():
    with pytest.raises(ValueError, match="temperature > 0"):
        CosineSimilarity(temperature=0)


def test_nce_with_several_positives_per_anchor_matches_loop():
    g = torch.Generator().manual_seed(2)
    scores = torch.randn(3, 8, generator=g) * 2
    positives = torch.tensor([[0, 1], [2, 3], [4, 5]])
    loss = NCELoss()(scores, Comparison(None, None, positives))
    total, count = 0.0, 0
    for i in range(3):
        negatives = [j for j in range(8) if j not in positives[i].tolist()]
        neg_sum = sum(math.exp(scores[i, j].item()) for j in negatives)
        for p in positives[i].tolist():
            s = scores[i, p].item()
            total += -(s - math.log(math.exp(s) + neg_sum))
            count += 1
    assert loss.item() == pytest.approx(total / count, rel=1e-5)


def test_nce_excludes_several_candidates_per_anchor():
    scores = torch.tensor([[2.0, 1.0, 0.5, -1.0], [0.0, 3.0, 1.0, 2.0]])
    comp = Comparison(None, None, torch.tensor([0, 1]), exclude=torch.tensor([[1, 2], [0, 2]]))
    expected = nce_by_loops([[2.0, -1.0], [3.0, 2.0]], [0, 0])
    assert NCELoss()(scores, comp).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("similarity", [CosineSimilarity(temperature=0.1), DotSimilarity(temperature=0.1),
                                        DotSimilarity(scale_by_sqrt_dim=True, tanh_clip=20.0)])
def test_similarity_scores_stay_float32_under_bf16_autocast(similarity):
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(64, 32, generator=generator), torch.randn(96, 32, generator=generator)
    reference = similarity(a, b)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = similarity(a.bfloat16(), b)
        plain_product = a @ b.t()
    assert plain_product.dtype == torch.bfloat16  # autocast is really on here
    assert mixed.dtype == torch.float32
    assert torch.equal(mixed, similarity(a.bfloat16().float(), b))
    assert (mixed - reference).abs().max() < 0.05 * reference.abs().max()
