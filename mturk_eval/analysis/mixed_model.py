"""The crossed random-effects model per aspect: score ~ system + (1 | item) + (1 | rater), fitted by REML.

Reported beside the paper's tables (which stay as they are): the system differences with Wald intervals
and p-values, and the three variance components (item, rater, residual) with intervals; the study
planner (``mturk_eval.planning``) reuses the components.

Why the fit is written here and statsmodels is the test oracle: statsmodels' ``MixedLM`` fits crossed
effects only as variance components of one all-covering group, with dense solves over every rating:
9 s for 2,250 ratings (the paper's general set, one aspect) and 2 s for 1,500 on this machine, which
would make the report minutes long. The same REML criterion is evaluated here with the block structure of
crossed designs: the item block of Z'Z + Lambda^-1 is diagonal, so after one Schur complement only a
dense (raters x raters) or (items x items) matrix, whichever is smaller, is factorised; milliseconds per
evaluation (sparse LU above ``SPARSE_ABOVE`` of each, where that matrix is sparse: many raters, each on a
few items). ``tests/test_mixed_model.py`` checks estimates against ``statsmodels.MixedLM`` on the same
data and the recovery of known effects and components in simulation.

Above ``max_ratings`` ratings per fit, the model is fitted on a random subsample of whole items (a stream
seeded by the report's seed and the fit's key) and the report says so.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import linalg as sla
from scipy import optimize
from scipy import stats as sps

COMPONENTS = ("item", "rater", "residual")
# Above this many items and raters (the smaller of the two), the Schur complement is factorised sparse.
SPARSE_ABOVE = 200


@dataclass
class MixedFit:
    """One fit: fixed effects (intercept = first system's mean, then each other system's difference),
    their covariance, and the variance components with intervals."""

    systems: list[str]
    beta: np.ndarray
    cov_beta: np.ndarray
    variance: dict[str, float]
    variance_ci: dict[str, tuple[float, float]]
    n_ratings: int
    n_items: int
    n_raters: int
    subsampled_from: int = 0     # ratings before subsampling (0 = not subsampled)
    converged: bool = True
    level: float = 0.95
    extra: dict[str, Any] = field(default_factory=dict)

    def difference(self, i: int, j: int) -> dict[str, float]:
        """System i minus system j: estimate, standard error, Wald interval and two-sided p."""
        c = np.zeros(self.beta.size)
        if i > 0:
            c[i] += 1
        if j > 0:
            c[j] -= 1
        est = float(c @ self.beta)
        se = float(np.sqrt(max(c @ self.cov_beta @ c, 0.0)))
        z = sps.norm.ppf((1 + self.level) / 2)
        p = float(2 * sps.norm.sf(abs(est) / se)) if se > 0 else float("nan")
        return {"estimate": est, "se": se, "ci_low": est - z * se, "ci_high": est + z * se, "p": p}


class _Crossed:
    """REML criterion of y = X beta + Z_item u + Z_rater v + e for one data set."""

    def __init__(self, y: np.ndarray, X: np.ndarray, item: np.ndarray, rater: np.ndarray):
        self.y, self.X = y, X
        self.n, self.p = X.shape
        _, self.item = np.unique(item, return_inverse=True)
        _, self.rater = np.unique(rater, return_inverse=True)
        self.I, self.J = int(self.item.max()) + 1, int(self.rater.max()) + 1
        self.n_i = np.bincount(self.item, minlength=self.I).astype(np.float64)
        self.m_r = np.bincount(self.rater, minlength=self.J).astype(np.float64)
        # Incidence counts item x rater, dense on the smaller side.
        self.swap = self.I < self.J          # Schur complement onto the smaller block
        W = np.column_stack([y, X])
        self.ZtW_i = np.zeros((self.I, W.shape[1]))
        np.add.at(self.ZtW_i, self.item, W)
        self.ZtW_r = np.zeros((self.J, W.shape[1]))
        np.add.at(self.ZtW_r, self.rater, W)
        self.WtW = W.T @ W
        from scipy import sparse
        self.C = sparse.csr_array((np.ones(self.n), (self.item, self.rater)), shape=(self.I, self.J))
        self.C_T = self.C.T.tocsr()
        self.pairs = None
        self.pattern = None
        if min(self.I, self.J) > SPARSE_ABOVE:
            self.pattern = self._sparse_pattern()
        elif not self.swap:
            # C' diag(w) C as one bincount over the pairs of raters within each item (no sparse overhead).
            order = np.argsort(self.item, kind="stable")
            it, ra = self.item[order], self.rater[order]
            starts = np.searchsorted(it, np.arange(self.I))
            n_i = self.n_i.astype(np.int64)
            if int((n_i * n_i).sum()) <= 5_000_000:
                rep = np.repeat(np.arange(self.n), n_i[it])            # each rating once per rating of its item
                offs = np.arange(rep.size) - np.repeat(np.cumsum(n_i[it]) - n_i[it], n_i[it])
                other = starts[it[rep]] + offs
                self.pairs = (ra[rep] * self.J + ra[other], it[rep])

    def _sparse_pattern(self):
        """The fixed non-zero pattern of the Schur complement (CSC order) and, for every pair of ratings
        sharing an eliminated unit (a rater when items are kept, an item when raters are), its entry and
        the unit; only the values change with theta."""
        keep, elim, m = (self.item, self.rater, self.I) if self.swap else (self.rater, self.item, self.J)
        order = np.argsort(elim, kind="stable")
        e_sorted, k_sorted = elim[order], keep[order]
        size = np.bincount(elim)
        starts = np.r_[0, np.cumsum(size)[:-1]]
        rep = np.repeat(np.arange(e_sorted.size), size[e_sorted])          # each rating once per partner
        offs = np.arange(rep.size) - np.repeat(np.cumsum(size[e_sorted]) - size[e_sorted], size[e_sorted])
        other = starts[e_sorted[rep]] + offs
        # CSC: column-major keys (col * m + row); the diagonal is always present.
        keys = np.r_[k_sorted[other] * m + k_sorted[rep], np.arange(m) * (m + 1)]
        uniq, inv = np.unique(keys, return_inverse=True)
        rows, cols = uniq % m, uniq // m
        indptr = np.searchsorted(cols, np.arange(m + 1))
        diag_pos = inv[rep.size:]
        return uniq.size, inv[:rep.size], e_sorted[rep], diag_pos, rows.astype(np.int32), indptr.astype(np.int32)

    def _pieces(self, theta_i: float, theta_r: float):
        """W' H^-1 W (W = [y X]) and log|H| for H = I + theta_i ZiZi' + theta_r ZrZr'."""
        if theta_i <= 0 or theta_r <= 0:
            raise ValueError
        d_i = self.n_i + 1.0 / theta_i
        d_r = self.m_r + 1.0 / theta_r
        m = min(self.I, self.J)
        if m > SPARSE_ABOVE:
            # Many items and many raters (a subsample of a big study, each rater on a few items): the Schur
            # complement is sparse, and a sparse LU costs milliseconds where a dense Cholesky of the same
            # size costs a tenth of a second per evaluation.
            from scipy import sparse
            from scipy.sparse import linalg as spla

            nnz, entry, unit, diag_pos, rows, indptr = self.pattern
            if not self.swap:
                u1, u2, d1, d2, Cm = self.ZtW_i, self.ZtW_r, d_i, d_r, self.C
            else:
                u1, u2, d1, d2, Cm = self.ZtW_r, self.ZtW_i, d_r, d_i, self.C_T
            data = -np.bincount(entry, weights=1.0 / d1[unit], minlength=nnz)
            data[diag_pos] += d2
            S = sparse.csc_matrix((data, rows, indptr), shape=(d2.size, d2.size))
            try:
                lu = spla.splu(S, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0)
            except RuntimeError as e:          # singular: not positive definite
                raise np.linalg.LinAlgError(str(e)) from None
            diag_u = lu.U.diagonal()
            if not (diag_u > 0).all():
                raise np.linalg.LinAlgError("not positive definite")
            rhs = u2 - Cm.T @ (u1 / d1[:, None])
            x2 = lu.solve(np.asarray(rhs))
            logdet_s = float(np.log(diag_u).sum())
        else:
            if not self.swap:   # eliminate the (diagonal) item block, factorise raters x raters
                if self.pairs is not None:
                    flat, pair_item = self.pairs
                    S = np.diag(d_r) - np.bincount(flat, weights=1.0 / d_i[pair_item],
                                                   minlength=self.J * self.J).reshape(self.J, self.J)
                else:
                    Cd = self.C.T.multiply(1.0 / d_i).tocsr()           # J x I
                    S = np.diag(d_r) - (Cd @ self.C).toarray()
                u1, u2, d1, Cm = self.ZtW_i, self.ZtW_r, d_i, self.C
            else:               # eliminate the rater block, factorise items x items
                Cd = self.C.multiply(1.0 / d_r).tocsr()             # I x J
                S = np.diag(d_i) - (Cd @ self.C.T).toarray()
                u1, u2, d1, Cm = self.ZtW_r, self.ZtW_i, d_r, self.C.T.tocsr()
            L = sla.cho_factor(S, lower=True, check_finite=False)
            rhs = u2 - Cm.T @ (u1 / d1[:, None])
            x2 = sla.cho_solve(L, rhs, check_finite=False)
            logdet_s = 2 * np.log(np.diag(L[0])).sum()
        x1 = (u1 - Cm @ x2) / d1[:, None]
        quad = u1.T @ x1 + u2.T @ x2
        WHW = self.WtW - quad
        logdet = (np.log(d1).sum() + logdet_s
                  + self.I * np.log(theta_i) + self.J * np.log(theta_r))
        return WHW, logdet

    def gls(self, theta_i: float, theta_r: float):
        WHW, logdet = self._pieces(theta_i, theta_r)
        XHX = WHW[1:, 1:]
        XHy = WHW[1:, 0]
        beta = np.linalg.solve(XHX, XHy)
        rss = float(WHW[0, 0] - beta @ XHy)
        sign, logdet_x = np.linalg.slogdet(XHX)
        return beta, rss, logdet, logdet_x, XHX

    def profiled(self, log_theta: np.ndarray) -> float:
        """-2 REML log-likelihood with the residual variance profiled out (up to a constant)."""
        try:
            _, rss, logdet, logdet_x, _ = self.gls(*np.exp(log_theta))
        except (ValueError, np.linalg.LinAlgError):
            return 1e300
        k = self.n - self.p
        return k * np.log(max(rss, 1e-300) / k) + logdet + logdet_x

    def full(self, log_var: np.ndarray) -> float:
        """-2 REML log-likelihood in (log s2_item, log s2_rater, log s2_resid)."""
        s2 = np.exp(log_var[2])
        try:
            _, rss, logdet, logdet_x, _ = self.gls(np.exp(log_var[0]) / s2, np.exp(log_var[1]) / s2)
        except (ValueError, np.linalg.LinAlgError):
            return 1e300
        return (self.n - self.p) * np.log(s2) + logdet + logdet_x + rss / s2


def _hessian(f, x: np.ndarray, h: float = 1e-3) -> np.ndarray:
    k = x.size
    H = np.zeros((k, k))
    f0 = f(x)
    for a in range(k):
        for b in range(a, k):
            ea = np.eye(k)[a] * h
            eb = np.eye(k)[b] * h
            if a == b:
                H[a, a] = (f(x + ea) - 2 * f0 + f(x - ea)) / (h * h)
            else:
                H[a, b] = H[b, a] = (f(x + ea + eb) - f(x + ea - eb) - f(x - ea + eb) + f(x - ea - eb)) / (4 * h * h)
    return H


def fit_crossed(score: np.ndarray, system: np.ndarray, item: np.ndarray, rater: np.ndarray,
                systems: list[str] | None = None, level: float = 0.95,
                start: tuple[float, float, float] | None = None) -> MixedFit:
    """REML fit of score ~ system + (1|item) + (1|rater). ``system``: integer codes 0..S-1 (0 is the
    reference); ``item``/``rater``: any integer codes. Variance intervals: Wald on the log scale from the
    observed information (a boundary estimate gives an interval reaching down to about 0)."""
    y = np.asarray(score, dtype=np.float64)
    system = np.asarray(system, dtype=np.int64)
    if y.size < 3 or np.ptp(y) == 0:
        raise ValueError("every score is the same" if y.size else "no ratings")
    n_sys = int(system.max()) + 1 if system.size else 1
    X = np.zeros((y.size, n_sys))
    X[:, 0] = 1.0
    for s in range(1, n_sys):
        X[system == s, s] = 1.0
    model = _Crossed(y, X, np.asarray(item), np.asarray(rater))
    if start is None:   # moment estimates on the residuals from the system means
        from mturk_eval.analysis.intervals import components
        resid = y - X @ np.linalg.lstsq(X, y, rcond=None)[0]
        c = components(np.zeros(y.size, dtype=np.int64), np.asarray(item), np.asarray(rater), resid, 1)
        start = (float(c.item[0]), float(c.rater[0]), float(c.resid[0]))
    s_i, s_r, s_e = (max(v, 1e-3) for v in start)
    x0 = np.log([s_i / s_e, s_r / s_e])
    # Powell: two parameters, no gradient; L-BFGS-B costs more in its own bookkeeping than the criterion.
    best = optimize.minimize(model.profiled, np.clip(x0, -12, 6), method="Powell", bounds=[(-12, 6), (-12, 6)],
                             options={"xtol": 1e-5, "ftol": 1e-10})
    th_i, th_r = np.exp(best.x)
    beta, rss, _, _, XHX = model.gls(th_i, th_r)
    s2 = rss / (model.n - model.p)
    if not s2 > 0:
        raise ValueError("no residual variation")
    cov = s2 * np.linalg.inv(XHX)
    est = np.array([th_i * s2, th_r * s2, s2])
    z = sps.norm.ppf((1 + level) / 2)
    lv = np.log(est)
    try:
        info = _hessian(model.full, lv) / 2.0
        cov_lv = np.linalg.inv(info)
        se_lv = np.sqrt(np.clip(np.diag(cov_lv), 0, None))
    except np.linalg.LinAlgError:
        se_lv = np.full(3, np.inf)
    with np.errstate(over="ignore"):   # a boundary estimate: the upper end is unbounded (inf)
        ci = {name: (float(np.exp(lv[k] - z * se_lv[k])), float(np.exp(lv[k] + z * se_lv[k])))
              for k, name in enumerate(COMPONENTS)}
    return MixedFit(systems=list(systems) if systems else [str(s) for s in range(n_sys)], beta=beta, cov_beta=cov,
                    variance={name: float(est[k]) for k, name in enumerate(COMPONENTS)}, variance_ci=ci,
                    n_ratings=int(y.size), n_items=model.I, n_raters=model.J, converged=bool(best.success),
                    level=level)
