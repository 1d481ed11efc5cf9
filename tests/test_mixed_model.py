"""The crossed mixed model: the same REML estimates as statsmodels' MixedLM on the same data, and known
system effects and variance components recovered within their intervals at the nominal rate."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from mturk_eval.analysis.mixed_model import fit_crossed


def simulate_pilot(rng, systems=2, items=40, raters=20, per_item=4, sd=(0.7, 0.5, 0.8), effect=0.3, discrete=False):
    sys = np.repeat(np.arange(systems), items * per_item)
    item = np.repeat(np.arange(systems * items), per_item)
    rater = np.concatenate([rng.choice(raters, per_item, replace=False) for _ in range(systems * items)])
    y = 3 + effect * sys + rng.normal(0, sd[0], systems * items)[item] + rng.normal(0, sd[1], raters)[rater] \
        + rng.normal(0, sd[2], sys.size)
    if discrete:
        y = np.clip(np.rint(y), 1, 5)
    return sys, item, rater, y


def test_same_estimates_as_statsmodels():
    import statsmodels.api as sm

    rng = np.random.default_rng(0)
    sys, item, rater, y = simulate_pilot(rng, systems=3, items=25, raters=10, per_item=3, discrete=True)
    ours = fit_crossed(y, sys, item, rater)
    n = y.size
    X = np.column_stack([np.ones(n)] + [(sys == s).astype(float) for s in (1, 2)])
    Zi = np.zeros((n, item.max() + 1))
    Zi[np.arange(n), item] = 1
    Zr = np.zeros((n, rater.max() + 1))
    Zr[np.arange(n), rater] = 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = sm.MixedLM(y, X, groups=np.ones(n), exog_vc={"item": {1: Zi}, "rater": {1: Zr}}, exog_re=None).fit(reml=True)
    assert ours.beta == pytest.approx(np.asarray(ref.fe_params), abs=1e-4)
    assert [ours.variance["item"], ours.variance["rater"]] == pytest.approx(list(ref.vcomp), abs=1e-4)
    assert ours.variance["residual"] == pytest.approx(ref.scale, abs=1e-4)
    assert np.sqrt(np.diag(ours.cov_beta)) == pytest.approx(np.asarray(ref.bse)[:3], rel=2e-3)


def test_recovers_known_effects_and_components_at_the_nominal_rate():
    rng = np.random.default_rng(1)
    sd, effect, runs = (0.7, 0.5, 0.8), 0.3, 200
    hits = {"effect": 0, "item": 0, "rater": 0, "residual": 0}
    for _ in range(runs):
        sys, item, rater, y = simulate_pilot(rng, sd=sd, effect=effect)
        f = fit_crossed(y, sys, item, rater)
        d = f.difference(1, 0)
        hits["effect"] += d["ci_low"] <= effect <= d["ci_high"]
        for name, s in zip(("item", "rater", "residual"), sd):
            lo, hi = f.variance_ci[name]
            hits[name] += lo <= s * s <= hi
    for name, h in hits.items():
        assert abs(h / runs - 0.95) <= 0.05, (name, h / runs)


def test_difference_between_non_reference_systems():
    rng = np.random.default_rng(2)
    sys, item, rater, y = simulate_pilot(rng, systems=3, items=30, raters=15, per_item=3)
    f = fit_crossed(y, sys, item, rater)
    d21 = f.difference(2, 1)
    assert d21["estimate"] == pytest.approx(f.beta[2] - f.beta[1])
    assert f.difference(1, 2)["estimate"] == pytest.approx(-d21["estimate"])
    assert 0 < d21["p"] <= 1 and d21["ci_low"] < d21["estimate"] < d21["ci_high"]


def test_sparse_factorisation_gives_the_dense_fit(monkeypatch):
    """Many items and many raters (each on a few items): the sparse LU path fits what the dense Cholesky
    fits (the report's subsamples of big studies take the sparse path)."""
    from mturk_eval.analysis import mixed_model as mm

    rng = np.random.default_rng(3)
    n_items, n_raters = 400, 900
    item = np.repeat(np.arange(n_items), 5)
    rater = (item * 7 + np.tile(np.arange(5), n_items) * 131) % n_raters
    y = np.clip(np.round(3 + rng.normal(0, .6, n_items)[item] + rng.normal(0, .5, n_raters)[rater]
                         + 0.3 * (item % 3 == 1) + rng.normal(0, .8, item.size)), 1, 5)
    assert min(n_items, np.unique(rater).size) > mm.SPARSE_ABOVE
    sparse_fit = mm.fit_crossed(y, item % 3, item, rater)
    monkeypatch.setattr(mm, "SPARSE_ABOVE", 10**9)
    dense_fit = mm.fit_crossed(y, item % 3, item, rater)
    np.testing.assert_allclose(sparse_fit.beta, dense_fit.beta, atol=1e-5)
    for c in mm.COMPONENTS:
        assert abs(sparse_fit.variance[c] - dense_fit.variance[c]) < 1e-5
        np.testing.assert_allclose(sparse_fit.variance_ci[c], dense_fit.variance_ci[c], atol=1e-4)


@pytest.mark.parametrize("sd", [(0.7, 0.5, 0.8), (0.7, 0.0, 0.8), (0.0, 0.4, 0.8)])
def test_newton_finds_powells_optimum_or_better(monkeypatch, sd):
    """The projected Newton method (the default) reaches the REML optimum that the Powell fallback
    finds, components at the boundary (sd 0) included, with the same estimates and intervals."""
    from mturk_eval.analysis import mixed_model as mm

    rng = np.random.default_rng(4)
    sys, item, rater, y = simulate_pilot(rng, systems=3, items=30, raters=12, per_item=4, sd=sd, discrete=True)
    newton = mm.fit_crossed(y, sys, item, rater)
    assert newton.converged
    monkeypatch.setattr(mm, "_newton", lambda *a, **k: None)
    powell = mm.fit_crossed(y, sys, item, rater)

    def criterion(f):
        X = np.column_stack([np.ones(y.size)] + [(sys == s).astype(float) for s in (1, 2)])
        u = np.log([f.variance["item"] / f.variance["residual"], f.variance["rater"] / f.variance["residual"]])
        return mm._Crossed(y, X, item, rater).profiled(u)

    assert criterion(newton) <= criterion(powell) + 1e-8
    np.testing.assert_allclose(newton.beta, powell.beta, atol=1e-5)
    for c in mm.COMPONENTS:
        assert abs(newton.variance[c] - powell.variance[c]) < 1e-4
        if newton.variance[c] > 1e-3:       # interior: the same Wald interval
            np.testing.assert_allclose(newton.variance_ci[c], powell.variance_ci[c], rtol=1e-3)
        else:                               # boundary: an interval from about 0 to far above the data's range
            assert newton.variance_ci[c][0] < 1e-3 < np.var(y) < newton.variance_ci[c][1]


def test_information_from_the_stencil_is_the_hessian_of_the_full_criterion():
    """The observed information comes from the last Newton stencil by the chain rule; it equals the
    finite-difference Hessian of the full three-parameter criterion."""
    from mturk_eval.analysis import mixed_model as mm

    rng = np.random.default_rng(6)
    sys, item, rater, y = simulate_pilot(rng, systems=2, items=40, raters=15, per_item=4)
    X = np.column_stack([np.ones(y.size), (sys == 1).astype(float)])
    model = mm._Crossed(y, X, item, rater)
    st = mm._newton(model, np.log([0.7, 0.3]))
    dof = model.n - model.p
    s2 = st.R[0] / dof
    lv = np.log([np.exp(st.u[0]) * s2, np.exp(st.u[1]) * s2, s2])
    np.testing.assert_allclose(st.full_hessian(dof), mm._hessian(model.full, lv), rtol=1e-4, atol=1e-3)
