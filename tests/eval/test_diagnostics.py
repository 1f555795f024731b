"""Label-free diagnostics against the papers' formulas written out in numpy (float64), on data with a known answer."""
import numpy as np
import pytest
from scipy.spatial.distance import pdist

from eval import diagnostics
from sslt_core.errors import DatasetError


def rankme_reference(z, eps=1e-7):  # Garrido et al. 2023, eq. 1
    s = np.linalg.svd(z, compute_uv=False)
    p = s / np.abs(s).sum() + eps
    return float(np.exp(-(p * np.log(p)).sum()))


def uniformity_reference(z, t=2.0):  # Wang & Isola 2020: torch.pdist(x, p=2).pow(2).mul(-t).exp().mean().log()
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    return float(np.log(np.exp(-t * pdist(z) ** 2).mean()))


def alignment_reference(x, y):  # Wang & Isola 2020: (x - y).norm(dim=1).pow(2).mean()
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    y = y / np.linalg.norm(y, axis=1, keepdims=True)
    return float((np.linalg.norm(x - y, axis=1) ** 2).mean())


def with_spectrum(eigenvalues, n, seed=0):
    """An n x D matrix whose centred covariance (1/(n-1)) has exactly `eigenvalues`, in a random basis."""
    rng = np.random.default_rng(seed)
    d = len(eigenvalues)
    g = rng.standard_normal((n, d))
    g -= g.mean(axis=0)
    u, _ = np.linalg.qr(g)  # orthonormal columns, each orthogonal to the ones vector
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return np.sqrt(n - 1) * u * np.sqrt(eigenvalues) @ q.T + 3.0  # an offset that centring removes


def test_rankme_of_isotropic_gaussian_is_near_d():
    z = np.random.default_rng(0).standard_normal((4000, 64))
    value = diagnostics.rankme(z)
    assert value == pytest.approx(rankme_reference(z), rel=1e-10)
    assert 0.95 * 64 < value <= 64


@pytest.mark.parametrize("k", [1, 5, 20])
def test_rankme_of_rank_k_data_is_near_k(k):
    rng = np.random.default_rng(k)
    z = rng.standard_normal((2000, k)) @ rng.standard_normal((k, 64))
    value = diagnostics.rankme(z)
    assert value == pytest.approx(rankme_reference(z), rel=1e-8)
    assert abs(value - k) < 0.25 * k + 0.05  # unequal singular values only lower it below k


def test_identical_features_have_rank_one_and_uniformity_zero():
    z = np.tile(np.random.default_rng(1).standard_normal(32), (50, 1))
    assert diagnostics.rankme(z) == pytest.approx(1.0, abs=1e-3)
    assert diagnostics.uniformity(z) == pytest.approx(0.0, abs=1e-12)
    assert uniformity_reference(z) == pytest.approx(0.0, abs=1e-12)


def test_alignment_of_identical_views_is_zero_and_matches_the_formula():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((300, 16))
    assert diagnostics.alignment(x, x.copy()) == pytest.approx(0.0, abs=1e-12)
    y = x + 0.3 * rng.standard_normal(x.shape)
    assert diagnostics.alignment(x, y) == pytest.approx(alignment_reference(x, y), rel=1e-10)


@pytest.mark.parametrize("block", [7, 2048])
def test_uniformity_matches_the_pairwise_formula(block):
    z = np.random.default_rng(3).standard_normal((301, 8))
    assert diagnostics.uniformity(z, block=block) == pytest.approx(uniformity_reference(z), rel=1e-10)
    # Uniform on the sphere is the most uniform: its value is below that of a clustered set.
    clustered = z * 0.05 + np.ones(8)
    assert diagnostics.uniformity(z) < diagnostics.uniformity(clustered)


def test_covariance_spectrum_is_the_sorted_covariance_eigenvalues():
    z = np.random.default_rng(4).standard_normal((200, 12)) * np.arange(1, 13)
    reference = np.sort(np.linalg.eigvalsh(np.cov(z, rowvar=False)))[::-1]
    np.testing.assert_allclose(diagnostics.covariance_spectrum(z).numpy(), reference, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("alpha", [0.8, 1.0, 2.0])
def test_alpha_req_recovers_a_power_law_exponent(alpha):
    eigenvalues = np.arange(1, 129, dtype=float) ** -alpha
    z = with_spectrum(eigenvalues, n=1000, seed=5)
    spectrum = diagnostics.covariance_spectrum(z)
    np.testing.assert_allclose(spectrum.numpy(), eigenvalues, rtol=1e-8)
    fit = diagnostics.alpha_req(spectrum)
    assert fit["fit_range"] == [10, 64]  # stated: from the 10th to half of the non-zero eigenvalues
    assert fit["alpha"] == pytest.approx(alpha, rel=1e-8)
    assert fit["r2"] == pytest.approx(1.0, abs=1e-10)
    # A least-squares line written out with numpy's polyfit over the same range gives the same slope.
    k = np.arange(10, 65)
    slope, _ = np.polyfit(np.log(k), np.log(spectrum.numpy()[9:64]), 1)
    assert fit["alpha"] == pytest.approx(-slope, rel=1e-10)


def test_alpha_req_of_a_sampled_power_law_and_its_r2():
    rng = np.random.default_rng(6)
    scales = np.arange(1, 65, dtype=float) ** -0.5  # eigenvalues k^-1
    z = rng.standard_normal((20000, 64)) * scales
    fit = diagnostics.alpha_req(diagnostics.covariance_spectrum(z))
    assert fit["alpha"] == pytest.approx(1.0, abs=0.1)
    assert fit["r2"] > 0.95
    bent = np.r_[np.ones(20), np.full(44, 1e-3)]  # a cliff is not a power law: poor R^2 over the whole range
    fit = diagnostics.alpha_req(diagnostics.covariance_spectrum(with_spectrum(bent, 500)), fit_range=(1, 64))
    assert fit["r2"] < 0.9


def test_dimensional_collapse_warns_only_with_a_healthy_std():
    assert diagnostics.dimensional_collapse_warning(3.0, 1000, 2048, output_std=1 / 2048 ** 0.5)
    assert diagnostics.dimensional_collapse_warning(500.0, 1000, 2048, output_std=1 / 2048 ** 0.5) is None
    assert diagnostics.dimensional_collapse_warning(3.0, 1000, 2048, output_std=1e-4) is None  # complete collapse


@pytest.mark.parametrize("bad", [np.zeros((1, 4)), np.zeros(4), np.full((3, 2), np.nan)])
def test_bad_matrices_are_refused_in_one_line(bad):
    with pytest.raises(DatasetError, match="features"):
        diagnostics.rankme(bad)
