"""The swav row's prototypes get SwAV's gradient (issue 15, item 1).

SwAV's main_swav.py re-normalises the prototype weights under no_grad before each iteration, then applies them as
a plain bias-free linear layer to the L2-normalised z: scores = z @ C^T / 0.1, so the gradient on C keeps its
component along each prototype row. The reference below writes that computation out by hand, with its own
Sinkhorn loop, and the row's similarity and loss must reproduce its prototype gradient.
"""

import torch
import torch.nn.functional as F

import zoo
from tests.helpers.tiny_encoders import TinyConv

TEMPERATURE, EPSILON, ROUNDS = 0.1, 0.05, 3


def swav_codes(scores):
    """SwAV's Sinkhorn-Knopp written plainly: Q = exp(scores / eps)^T (K x B), total 1, then rows to 1/K and
    columns to 1/B, ROUNDS times; each sample's code is its column times B."""
    q = torch.exp(scores.double() / EPSILON).t()
    q = q / q.sum()
    k, b = q.shape
    for _ in range(ROUNDS):
        for row in range(k):
            q[row] = q[row] / q[row].sum() / k
        for col in range(b):
            q[:, col] = q[:, col] / q[:, col].sum() / b
    return (q * b).t().float()


def test_swav_row_prototype_gradient_matches_swav_code():
    torch.manual_seed(0)
    row = zoo.get_method("swav")
    encoder = TinyConv()
    ext = zoo.REGISTRIES["extract"].build("prototypes", {
        **row.extract.kwargs, "encoder": encoder, "head_hidden": 16, "head_out": 8, "n_prototypes": 5})
    similarity = zoo.REGISTRIES["similarity"].build(row.similarity.name, row.similarity.kwargs)
    loss_fn = zoo.REGISTRIES["loss"].build(row.loss.name, row.loss.kwargs)
    with torch.no_grad():
        ext.prototypes.weight.mul_(2.5)  # off the sphere, as after an optimizer step
    g = torch.Generator().manual_seed(3)
    views = [torch.randn(6, 1, 12, 12, generator=g) for _ in range(2)] + \
            [torch.randn(6, 1, 6, 6, generator=g) for _ in range(2)]

    comps = ext(encoder, views)
    loss = sum(c.weight * loss_fn(similarity(c.anchors, c.candidates), c) for c in comps)
    loss.backward()
    got = ext.prototypes.weight.grad

    # SwAV by hand: one head pass over every crop's features, then z = normalize(head(features)) per view
    with torch.no_grad():
        z = F.normalize(ext.head(torch.cat([encoder(v) for v in views])), dim=1).split(6)
    prototypes = ext.prototypes.weight.detach().clone()
    with torch.no_grad():  # SwAV: normalise the prototype weights outside the graph
        prototypes = prototypes / prototypes.norm(dim=1, keepdim=True)
    prototypes.requires_grad_(True)
    codes = [swav_codes(z[i] @ prototypes.detach().t()) for i in range(2)]
    reference = 0.0
    for i in range(2):
        for v in range(4):
            if v != i:
                log_p = F.log_softmax(z[v] @ prototypes.t() / TEMPERATURE, dim=1)
                reference = reference - (codes[i] * log_p).sum(dim=1).mean() / (2 * 3)
    reference.backward()
    want = prototypes.grad

    assert torch.allclose(comps[0].targets, codes[0], atol=1e-5)  # the extractor's codes are SwAV's
    assert torch.allclose(comps[3].targets, codes[1], atol=1e-5)
    assert abs(loss.item() - reference.item()) < 1e-5
    unit = prototypes.detach()
    radial_got, radial_want = (got * unit).sum(dim=1), (want * unit).sum(dim=1)
    assert radial_want.abs().min() > 1e-4  # the reference gradient has a radial part on every prototype
    assert torch.allclose(radial_got, radial_want, rtol=1e-4, atol=1e-6)
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-6)
    assert (got - want).norm() <= 1e-4 * want.norm()
