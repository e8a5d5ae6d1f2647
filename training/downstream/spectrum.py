"""Label-free quality figures of an embedding matrix (N samples, D dims): RankMe and alpha-ReQ.

Both read only the spectrum of the features, so they need no labels and no probe training; each is a number to
compare encoders or checkpoints of one method on the same images, not an accuracy.

**RankMe** (Garrido, Balestriero, Najman, LeCun, "RankMe: Assessing the downstream performance of pretrained
self-supervised representations by their rank", ICML 2023): with sigma_k the singular values of the embedding
matrix Z itself, p_k = sigma_k / ||sigma||_1 + eps and RankMe = exp(-sum_k p_k log p_k). Z is not centred: the
paper takes the SVD of Z, as ngclearn's ``rankme`` does (reptrix's ``get_rankme`` applies the formula to
covariance eigenvalues instead, which is not the paper's figure). eps = 1e-7, the public implementations' value
(reptrix, ngclearn). With r equal non-zero singular values and eps = 0, RankMe is exactly r; with eps each of the
min(N, D) - r zero ones adds -eps log eps = 1.6e-6 to the entropy (a relative 1e-4 on RankMe for 64 of them).
RankMe is at most min(N, D) and grows with N: the paper uses 25,600 samples, so compare figures computed on the
same number of images.

**alpha-ReQ** (Agrawal, Mondal, Ghosh, Richards, "alpha-ReQ: Assessing representation quality in self-supervised
learning by measuring eigenspectrum decay", NeurIPS 2022): the eigenvalues lambda_1 >= lambda_2 >= ... of the
empirical covariance of the features are fitted with a power law lambda_k ~ k^-alpha, and alpha is the figure
(the paper finds intervals of alpha where linear readout does well: a small alpha is a flat, noise-like spectrum,
a large one features collapsed onto few directions). Choices, from the authors' reference code (``reptrix``
``alpha.py``/``utils.py``, by the same group, and ``fastssl``):

- the features are centred (mean over samples removed) before the covariance; the eigenvalues are the PCA
  explained variances, normalised or not (scale only moves the fit's intercept, never alpha);
- the fit runs over ranks k = 6..100 (1-based; the code's ``fit_range = np.arange(5, 100)`` of 0-based indices),
  skipping the first few eigenvalues because the tail is what is fitted, and capped at the numerical rank;
- the fit is least squares of log lambda_k on -log k with weights 1/k (Stringer, Pachitariu, Steinmetz,
  Carandini, Harris, Nature 2019, whose ``get_powerlaw`` the reference code reuses): each octave of k counts
  about equally. On an exact power law the weights do not matter: any weighting returns alpha exactly.

Numerical rank (for the alpha cap): singular values above sigma_1 * max(N, D) * eps of the features' dtype, the
threshold of ``numpy.linalg.matrix_rank``; smaller eigenvalues are rounding noise, and log of noise is no fit.

All computation is in float64 on the CPU whatever the input's dtype and device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict

import numpy as np
import torch
from torch import Tensor

from zoo.errors import ZooError

RANKME_EPS = 1e-7  # Garrido et al. 2023; the reference implementation's value
ALPHA_K_MIN, ALPHA_K_MAX = 6, 100  # 1-based ranks fitted by alpha-ReQ's reference code


def as_matrix(features: Any, what: str) -> Tensor:
    """``features`` (a tensor, an array, nested lists) as a float64 CPU (N, D) tensor; one-line errors for a
    wrong number of dims, too few samples and NaN/infinite values. ``what`` names the figure in the error."""
    try:
        given = features if isinstance(features, Tensor) else torch.from_numpy(np.asarray(features))
    except (TypeError, ValueError, RuntimeError) as err:
        raise ZooError(f"{what} needs a (samples, dims) matrix of numbers, got {type(features).__name__}: "
                       f"{err}") from None
    if given.dim() != 2:
        raise ZooError(f"{what} needs a 2-D (samples, dims) matrix, got shape {tuple(given.shape)}")
    if given.is_complex() or given.dtype == torch.bool:
        raise ZooError(f"{what} needs real numbers, got {given.dtype}")
    n, d = given.shape
    if n < 2 or d < 1:
        raise ZooError(f"{what} needs at least 2 samples and 1 dim, got {n} x {d}")
    x = given.detach().to("cpu", torch.float64)
    if not torch.isfinite(x).all():
        bad = int((~torch.isfinite(x)).any(dim=1).sum())
        raise ZooError(f"{what}: {bad} of the {n} feature rows hold NaN or infinite values")
    return x


def dtype_eps(features: Any) -> float:
    """Machine epsilon of the given features' dtype (float32 for integer input): what rounding they carry."""
    dtype = getattr(features, "dtype", None)
    if isinstance(dtype, torch.dtype) and dtype.is_floating_point:
        return float(torch.finfo(dtype).eps)
    if isinstance(dtype, np.dtype) and np.issubdtype(dtype, np.floating):
        return float(np.finfo(dtype).eps)
    return float(np.finfo(np.float64 if isinstance(features, list) else np.float32).eps)


def rankme(features: Any, eps: float = RANKME_EPS) -> float:
    """RankMe of ``features`` (N, D): exp of the entropy of the L1-normalised singular values plus ``eps``
    (module docstring). ``eps=0`` gives the plain effective rank (0 log 0 taken as 0)."""
    x = as_matrix(features, "RankMe")
    sigma = torch.linalg.svdvals(x)
    total = sigma.sum()
    if total <= 0:
        raise ZooError("RankMe: every feature is zero (the encoder collapsed to 0); the rank is undefined")
    p = sigma / total + eps
    terms = torch.where(p > 0, p * torch.log(p), torch.zeros_like(p))
    return float(torch.exp(-terms.sum()))


def covariance_spectrum(features: Any) -> Tensor:
    """Eigenvalues of the features' covariance (centred, divided by N - 1), largest first, float64, from the
    singular values of the centred matrix (sigma^2 / (N - 1): no D x D matrix formed, no negative rounding)."""
    x = as_matrix(features, "the covariance spectrum")
    sigma = torch.linalg.svdvals(x - x.mean(dim=0, keepdim=True))
    return sigma.square() / (x.shape[0] - 1)


@dataclass(frozen=True)
class PowerLawFit:
    """lambda_k ~ exp(log_scale) * k^-alpha fitted over ranks ``k_min..k_max`` (1-based, inclusive); ``r2`` is the
    weighted coefficient of determination of the fit in log-log over those ranks."""

    alpha: float
    log_scale: float
    r2: float
    k_min: int
    k_max: int


def power_law_fit(eigenvalues: Any, k_min: int = ALPHA_K_MIN, k_max: int = ALPHA_K_MAX) -> PowerLawFit:
    """Weighted (1/k) least squares of log lambda_k on log k over ranks ``k_min..k_max`` of ``eigenvalues`` (sorted
    largest first; 1-based ranks). ``k_max`` is capped at the number of values given; every value fitted must be
    positive."""
    values = torch.as_tensor(eigenvalues, dtype=torch.float64).flatten()
    if k_min < 1 or k_max < k_min + 1:
        raise ZooError(f"the power-law fit needs 1 <= k_min < k_max, got k_min={k_min}, k_max={k_max}")
    top = min(k_max, len(values))
    if top < k_min + 1:
        raise ZooError(f"the power-law fit of ranks {k_min}..{k_max} needs at least {k_min + 1} eigenvalues, got "
                       f"{len(values)}")
    k = torch.arange(k_min, top + 1, dtype=torch.float64)
    y = values[k_min - 1:top]
    if (y <= 0).any() or not torch.isfinite(y).all():
        raise ZooError(f"the power-law fit needs positive eigenvalues at ranks {k_min}..{top}")
    log_y, w = torch.log(y), 1.0 / k
    design = torch.stack([-torch.log(k), torch.ones_like(k)], dim=1)  # log y = alpha * (-log k) + log_scale
    alpha, log_scale = torch.linalg.solve(design.T @ (design * w[:, None]), design.T @ (w * log_y)).tolist()
    residual = log_y - design @ torch.tensor([alpha, log_scale], dtype=torch.float64)
    mean = (w * log_y).sum() / w.sum()
    spread = float((w * (log_y - mean).square()).sum())
    r2 = 1.0 - float((w * residual.square()).sum()) / spread if spread > 0 else 1.0
    return PowerLawFit(alpha=alpha, log_scale=log_scale, r2=r2, k_min=k_min, k_max=top)


def numerical_rank(spectrum: Tensor, n: int, d: int, eps: float) -> int:
    """How many covariance eigenvalues stand above rounding: sigma_k > sigma_1 * max(N, D) * eps, as
    ``numpy.linalg.matrix_rank`` decides (sigma_k = sqrt((N - 1) lambda_k))."""
    if len(spectrum) == 0 or spectrum[0] <= 0:
        return 0
    sigma = torch.sqrt(spectrum * (n - 1))
    return int((sigma > sigma[0] * max(n, d) * eps).sum())


def alpha_req_fit(features: Any, k_min: int = ALPHA_K_MIN, k_max: int = ALPHA_K_MAX) -> PowerLawFit:
    """alpha-ReQ's power-law fit of the features' covariance spectrum (module docstring), ranks ``k_min..k_max``
    capped at the numerical rank; one-line error when fewer than ``k_min + 1`` eigenvalues are above rounding."""
    x = as_matrix(features, "alpha-ReQ")
    spectrum = covariance_spectrum(x)
    rank = numerical_rank(spectrum, x.shape[0], x.shape[1], dtype_eps(features))
    if rank < k_min + 1:
        raise ZooError(f"alpha-ReQ fits the covariance eigenvalues of ranks {k_min}..{k_max}, but these {x.shape[0]} "
                       f"x {x.shape[1]} features have only {rank} above rounding; use more images (and dims "
                       f"above {k_min}) or a smaller k_min")
    return power_law_fit(spectrum[:rank], k_min, k_max)


def alpha_req(features: Any, k_min: int = ALPHA_K_MIN, k_max: int = ALPHA_K_MAX) -> float:
    """alpha-ReQ: the decay exponent alpha of the features' covariance spectrum (``alpha_req_fit(...).alpha``)."""
    return alpha_req_fit(features, k_min, k_max).alpha


def spectrum_figures(features: Any) -> Dict[str, Any]:
    """Both figures with what they were computed on, JSON-able: ``rankme``, ``alpha_req`` (None when the spectrum
    is too short to fit, with ``alpha_req_error`` saying why), the fit's ranks and r2, ``n`` and ``dims``."""
    x = as_matrix(features, "the spectrum figures")
    out: Dict[str, Any] = {"n": int(x.shape[0]), "dims": int(x.shape[1]), "rankme": rankme(x)}
    try:
        fit = alpha_req_fit(features)
    except ZooError as err:
        out.update(alpha_req=None, alpha_req_error=str(err))
    else:
        out.update(alpha_req=fit.alpha, alpha_req_r2=fit.r2, alpha_req_ranks=[fit.k_min, fit.k_max])
    return out
