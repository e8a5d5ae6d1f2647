"""How much bf16 similarity scores move the loss gradient on the embeddings (a measurement, not a test).

``python bench/similarity_precision.py``

NT-Xent on 512 embeddings (256 positive pairs, 128-d, pairs correlated as after a few epochs) and BYOL's
regression on 256 pairs, each computed three ways on the CPU: all float32 (the reference), the product of
normalised vectors inside bf16 autocast (what a plain ``a @ b.T`` gives there), and inside bf16 autocast with
our similarity parts, which compute the scores in float32. The embeddings enter in float32 (in training they
leave a bf16 head, whose own rounding is not measured here). Printed: the loss and the relative error
``|g - g_ref| / |g_ref|`` of the gradient on the embeddings.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from zoo.parts.extract import Comparison
from zoo.parts.losses import NCELoss, RegressionLoss
from zoo.parts.similarity import CosineSimilarity


def plain_cosine(temperature: float):
    return lambda a, b: F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).t() / temperature


def gradient(loss_of, embeddings: torch.Tensor, autocast: bool):
    x = embeddings.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss = loss_of(x)
    loss.backward()
    return loss.item(), x.grad


def report(name: str, loss_for) -> None:
    """``loss_for(similarity)`` returns a function of the embeddings to differentiate."""
    ref_loss, ref_grad = gradient(loss_for(False), EMBEDDINGS[name], autocast=False)
    print(f"{name}: float32 loss {ref_loss:.5f}")
    for label, autocast, plain in (("bf16 autocast, plain product", True, True),
                                   ("bf16 autocast, our similarity part", True, False)):
        loss, grad = gradient(loss_for(plain), EMBEDDINGS[name], autocast)
        error = ((grad - ref_grad).norm() / ref_grad.norm()).item()
        print(f"  {label:36s} loss {loss:.5f}  relative gradient error {error:.2e}")


torch.manual_seed(0)
_base = torch.randn(256, 128)
_targets = F.normalize(torch.randn(256, 256), dim=1)
EMBEDDINGS = {f"nt-xent, temperature {t}": torch.cat([_base + 0.5 * torch.randn(256, 128),
                                                      _base + 0.5 * torch.randn(256, 128)]) for t in (0.1, 0.5)}
EMBEDDINGS["byol regression"] = _targets + 0.3 * torch.randn(256, 256)


def nt_xent(temperature: float):
    n = 512
    comparison = Comparison(None, None, positives=torch.cat([torch.arange(256, n), torch.arange(256)]),
                            exclude=torch.arange(n))

    def loss_for(plain):
        similarity = plain_cosine(temperature) if plain else CosineSimilarity(temperature=temperature)
        return lambda x: NCELoss()(similarity(x, x), comparison)

    return loss_for


def byol_regression(plain):
    similarity = plain_cosine(1.0) if plain else CosineSimilarity(temperature=1.0)
    comparison = Comparison(None, None, positives=torch.arange(256))
    return lambda x: RegressionLoss()(similarity(x, _targets), comparison)


if __name__ == "__main__":
    for t in (0.1, 0.5):
        report(f"nt-xent, temperature {t}", nt_xent(t))
    report("byol regression", byol_regression)
