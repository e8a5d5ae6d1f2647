"""RankMe and alpha-ReQ against hand computations on embeddings built with known singular values."""

import math

import numpy as np
import pytest
import torch

from training.downstream.spectrum import (
    alpha_req,
    alpha_req_fit,
    covariance_spectrum,
    power_law_fit,
    rankme,
    spectrum_figures,
)
from zoo.errors import ZooError


def with_singular_values(values, n: int, d: int, seed: int = 0) -> torch.Tensor:
    """X = U diag(values) V^T (float64), n x d, U's columns orthonormal and orthogonal to the ones vector, so X's
    columns have mean 0 and its covariance eigenvalues are exactly values^2 / (n - 1)."""
    rng = np.random.default_rng(seed)
    m = len(values)
    u = rng.standard_normal((n, m))
    u, _ = np.linalg.qr(u - u.mean(axis=0))
    v, _ = np.linalg.qr(rng.standard_normal((d, m)))
    return torch.from_numpy(u @ np.diag(values) @ v.T)


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.3])
def test_a_power_law_spectrum_gives_its_exponent(alpha):
    k = np.arange(1, 201, dtype=np.float64)
    x = with_singular_values(k ** (-alpha / 2), n=400, d=256)  # eigenvalues k^-alpha / 399
    fit = alpha_req_fit(x)
    assert abs(fit.alpha - alpha) < 1e-6
    assert (fit.k_min, fit.k_max) == (6, 100)
    assert abs(fit.log_scale - math.log(1 / 399)) < 1e-6 and abs(fit.r2 - 1.0) < 1e-9


def test_alpha_is_the_weighted_least_squares_slope_of_ranks_6_to_100():
    # a spectrum that is no power law, so the range and the 1/k weights matter; numpy's polyfit weights the
    # unsquared residuals, hence sqrt(1/k)
    k = np.arange(1, 151, dtype=np.float64)
    eigen = np.exp(-0.02 * k) * k ** -0.7 + 1e-3 / k
    x = with_singular_values(np.sqrt(eigen * 299), n=300, d=160, seed=1)
    fitted = k[5:100]
    slope, _ = np.polyfit(np.log(fitted), np.log(eigen[5:100]), 1, w=np.sqrt(1 / fitted))
    assert abs(alpha_req(x) - (-slope)) < 1e-6
    unweighted, _ = np.polyfit(np.log(fitted), np.log(eigen[5:100]), 1)
    assert abs(-unweighted - (-slope)) > 1e-3  # the weights do change this answer: the check above can fail


def test_alpha_centres_the_features_and_caps_the_range_at_the_numerical_rank():
    k = np.arange(1, 51, dtype=np.float64)
    x = with_singular_values(k ** -0.6, n=120, d=80, seed=2)  # rank 50: eigenvalues 51.. are zero
    shifted = x + torch.linspace(-3, 5, 80, dtype=torch.float64)  # the same offset added to every sample
    for features in (x, shifted):
        fit = alpha_req_fit(features)
        assert abs(fit.alpha - 1.2) < 1e-6 and fit.k_max == 50
    assert torch.allclose(covariance_spectrum(shifted)[:50], torch.from_numpy(k ** -1.2 / 119), rtol=1e-9)


@pytest.mark.parametrize("r", [1, 7, 30])
def test_r_equal_singular_values_give_rankme_r(r):
    x = with_singular_values(np.full(r, 2.5), n=50, d=30, seed=r)
    assert abs(rankme(x, eps=0) - r) < 1e-6
    # the paper's eps = 1e-7 is added to all min(N, D) = 30 normalised values, the zero ones included
    p_on, p_off = 1 / r + 1e-7, 1e-7
    by_hand = math.exp(-(r * p_on * math.log(p_on) + (30 - r) * p_off * math.log(p_off)))
    assert abs(rankme(x) - by_hand) < 1e-6
    assert abs(rankme(x) - r) > 1e-5  # eps is really there: the test above would tell it from eps = 0


def test_rankme_of_unequal_singular_values_and_of_uncentred_features():
    x = with_singular_values(np.array([3.0, 2.0, 1.0]), n=20, d=10, seed=3)
    p = np.array([3.0, 2.0, 1.0]) / 6
    assert abs(rankme(x, eps=0) - math.exp(-(p * np.log(p)).sum())) < 1e-6
    # RankMe takes the SVD of the embeddings as they are (not centred): identical rows have rank 1, not 0
    same = torch.tensor([1.0, -2.0, 0.5, 4.0]).repeat(16, 1)
    assert abs(rankme(same, eps=0) - 1.0) < 1e-6
    assert abs(rankme(same.numpy()) - rankme(same)) < 1e-9  # arrays work as tensors do


def test_spectrum_figures_report_both_or_say_why_alpha_is_missing():
    k = np.arange(1, 65, dtype=np.float64)
    full = spectrum_figures(with_singular_values(k ** -0.5, n=100, d=64, seed=4))
    assert abs(full["alpha_req"] - 1.0) < 1e-6 and full["alpha_req_ranks"] == [6, 64] and full["dims"] == 64
    short = spectrum_figures(with_singular_values(np.ones(4), n=10, d=4, seed=5))
    assert short["alpha_req"] is None and "only 4 above rounding" in short["alpha_req_error"]
    assert abs(short["rankme"] - 4) < 1e-3


@pytest.mark.parametrize("features, message", [
    (torch.zeros(8), "needs a 2-D (samples, dims) matrix, got shape (8,)"),
    (torch.zeros(2, 3, 4), "got shape (2, 3, 4)"),
    (torch.ones(1, 16), "needs at least 2 samples and 1 dim, got 1 x 16"),
    (torch.tensor([[1.0, float("nan")], [0.0, 1.0], [2.0, float("inf")]]), "2 of the 3 feature rows hold NaN"),
    ([["a", "b"], ["c", "d"]], "matrix of numbers"),
])
def test_bad_features_give_one_line_errors(features, message):
    for figure in (rankme, alpha_req):
        with pytest.raises(ZooError) as err:
            figure(features)
        assert message in str(err.value) and "\n" not in str(err.value)


def test_collapsed_or_too_narrow_features_are_refused_with_the_reason():
    with pytest.raises(ZooError, match="every feature is zero"):
        rankme(torch.zeros(10, 4))
    with pytest.raises(ZooError, match=r"ranks 6\.\.100, but these 40 x 5 features have only 5 above rounding"):
        alpha_req(torch.randn(40, 5, generator=torch.Generator().manual_seed(0)))
    with pytest.raises(ZooError, match="needs 1 <= k_min < k_max"):
        power_law_fit(torch.ones(10), k_min=4, k_max=4)
