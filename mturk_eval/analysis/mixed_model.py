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

The two variance ratios are found by a projected Newton method whose derivatives come from a seven-point
stencil (:func:`_newton`): about 35 evaluations per fit where Powell's method took about 250, and the last
stencil also gives the observed information for the intervals (the three-parameter Hessian by the chain
rule), which took 19 more evaluations before. Powell remains the fallback when Newton does not converge.

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
            from scipy import sparse
            nnz, _, _, _, rows, indptr = self.pattern
            m = min(self.I, self.J)
            # One matrix per fit whose values are overwritten each evaluation: its structure is checked
            # once, not at every factorisation.
            self.S = sparse.csc_matrix((np.zeros(nnz), rows, indptr), shape=(m, m))
            self.S.has_canonical_format = True
            self.Cm, self.CmT = (self.C_T, self.C) if self.swap else (self.C, self.C_T)
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
            from scipy.sparse import linalg as spla

            nnz, entry, unit, diag_pos, rows, indptr = self.pattern
            if not self.swap:
                u1, u2, d1, d2 = self.ZtW_i, self.ZtW_r, d_i, d_r
            else:
                u1, u2, d1, d2 = self.ZtW_r, self.ZtW_i, d_r, d_i
            Cm = self.Cm
            data = -np.bincount(entry, weights=1.0 / d1[unit], minlength=nnz)
            data[diag_pos] += d2
            S = self.S
            S.data[:] = data
            try:
                lu = spla.splu(S, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0)
            except RuntimeError as e:          # singular: not positive definite
                raise np.linalg.LinAlgError(str(e)) from None
            diag_u = lu.U.diagonal()
            if not (diag_u > 0).all():
                raise np.linalg.LinAlgError("not positive definite")
            rhs = u2 - self.CmT @ (u1 / d1[:, None])
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
                u1, u2, d1, Cm = self.ZtW_r, self.ZtW_i, d_r, self.C_T
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


# log theta (theta = a variance over the residual variance) is kept in [LOG_THETA_LOW, LOG_THETA_HIGH]: a
# component at the lower end is reported as (about) zero.
LOG_THETA_LOW, LOG_THETA_HIGH = -12.0, 6.0
STEP = 1e-3            # finite-difference step in log theta (the stencil of every Newton iteration)
_OFFSETS = np.array([(0, 0), (STEP, 0), (-STEP, 0), (0, STEP), (0, -STEP), (STEP, STEP), (-STEP, -STEP)])


@dataclass
class _Stencil:
    """The two parts of the criterion, G = log|H| + log|X'H^-1X| and R = the residual sum of squares
    y'Py, at log theta ``u`` and its six neighbours, with their gradients and Hessians in log theta (central
    differences, errors of order STEP^2)."""

    u: np.ndarray
    G: np.ndarray        # at the seven points of _OFFSETS
    R: np.ndarray

    @staticmethod
    def derivatives(f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h = STEP
        g = np.array([f[1] - f[2], f[3] - f[4]]) / (2 * h)
        hxx = (f[1] - 2 * f[0] + f[2]) / (h * h)
        hyy = (f[3] - 2 * f[0] + f[4]) / (h * h)
        hxy = (f[5] - f[1] - f[3] + 2 * f[0] - f[2] - f[4] + f[6]) / (2 * h * h)
        return g, np.array([[hxx, hxy], [hxy, hyy]])

    def profiled(self, k: int) -> tuple[float, np.ndarray, np.ndarray]:
        """The profiled criterion (as :meth:`_Crossed.profiled`) at ``u``, its gradient and Hessian."""
        P = k * np.log(np.maximum(self.R, 1e-300) / k) + self.G
        return (float(P[0]), *_Stencil.derivatives(P))

    def full_hessian(self, k: int) -> np.ndarray:
        """Hessian of :meth:`_Crossed.full` in (log s2_item, log s2_rater, log s2_resid) at the REML
        estimate, by the chain rule from G and R: full = k c + G(a - c, b - c) + R(a - c, b - c) e^-c with
        c = log s2_resid = log(R / k)."""
        gG, HG = _Stencil.derivatives(self.G)
        gR, HR = _Stencil.derivatives(self.R)
        R = float(self.R[0])
        e = k / R                                # e^-c
        J = np.array([[1.0, 0.0, -1.0], [0.0, 1.0, -1.0]])
        ec = np.array([0.0, 0.0, 1.0])
        jr = J.T @ gR
        return J.T @ HG @ J + e * (J.T @ HR @ J - np.outer(jr, ec) - np.outer(ec, jr) + R * np.outer(ec, ec))


def _stencil(model: "_Crossed", u: np.ndarray, centre: tuple[float, float] | None = None) -> _Stencil:
    """Evaluate G and R at ``u`` (or take them from ``centre``) and its six neighbours; raises
    LinAlgError/ValueError where the criterion cannot be evaluated."""
    G, R = np.empty(len(_OFFSETS)), np.empty(len(_OFFSETS))
    for j, off in enumerate(_OFFSETS):
        if j == 0 and centre is not None:
            G[0], R[0] = centre
            continue
        _, rss, logdet, logdet_x, _ = model.gls(*np.exp(u + off))
        G[j], R[j] = logdet + logdet_x, rss
    return _Stencil(u=np.asarray(u, dtype=np.float64), G=G, R=R)


def _newton(model: "_Crossed", u0: np.ndarray, max_iter: int = 50) -> _Stencil | None:
    """Minimise the profiled REML criterion over log theta in its box by a projected Newton method.

    The step is taken in the relative standard deviations t = exp(u / 2) (as lme4 parameterises the
    model): there a component at zero is an ordinary point of the criterion, where in log theta it lies
    at the end of a flat tail that any method approaches one unit per iteration. Gradient and Hessian
    come from the same seven-point stencil (6 new evaluations per iteration; Powell needed about 250
    evaluations per fit), and the stencil at the optimum gives the observed information for the
    intervals without further evaluations. Returns the stencil at the optimum, or None when it did not
    converge (the caller then uses Powell)."""
    k = model.n - model.p
    lo, hi = np.exp(LOG_THETA_LOW / 2), np.exp(LOG_THETA_HIGH / 2)

    def crit(u: np.ndarray) -> tuple[float, tuple[float, float]]:
        _, rss, logdet, logdet_x, _ = model.gls(*np.exp(u))
        return float(k * np.log(max(rss, 1e-300) / k) + logdet + logdet_x), (logdet + logdet_x, rss)

    u = np.clip(np.asarray(u0, dtype=np.float64), LOG_THETA_LOW, LOG_THETA_HIGH)
    f, centre = crit(u)
    for _ in range(max_iter):
        st = _stencil(model, u, centre)
        _, gu, Hu = st.profiled(k)
        if not (np.isfinite(gu).all() and np.isfinite(Hu).all()):
            return None
        t = np.exp(u / 2)
        # Derivatives in t: dP/dt = P_u 2/t; d2P/dt2 = (4 P_uu - 2 P_u) / t^2 on the diagonal, 4 P_uv/(t t').
        g = gu * 2 / t
        H = Hu * 4 / np.outer(t, t) - np.diag(2 * gu / (t * t))
        at_low = (u <= LOG_THETA_LOW + 1e-12) & (g > 0)
        at_high = (u >= LOG_THETA_HIGH - 1e-12) & (g < 0)
        free = ~(at_low | at_high)
        d = np.zeros(2)
        if free.any():
            Hf, gf = H[np.ix_(free, free)], g[free]
            w, V = np.linalg.eigh(Hf)
            # A Hessian that is not positive definite (far from the optimum): its eigenvalues by absolute
            # value, so the step still goes downhill.
            w = np.maximum(np.abs(w), 1e-8 * max(np.abs(w).max(), 1e-300))
            d[free] = -(V @ ((V.T @ gf) / w))
        # Converged: the step changes neither parameter by more than 1e-7 in log theta, or it would
        # lower the criterion by less than 1e-12 (a nearly flat direction, where the stencil's rounding
        # moves the step about at the 1e-6 level without changing any estimate).
        if (not free.any() or np.abs(2 * np.log(np.clip(t + d, lo, hi) / t)).max() < 1e-7
                or -float(g @ d) < 1e-12):
            return st
        alpha = 1.0
        for _ in range(40):
            u_new = 2 * np.log(np.clip(t + alpha * d, lo, hi))
            u_new = np.clip(u_new, LOG_THETA_LOW, LOG_THETA_HIGH)
            try:
                f_new, centre_new = crit(u_new)
            except (ValueError, np.linalg.LinAlgError):
                f_new = np.inf
            if f_new <= f + 1e-4 * float(g @ (np.exp(u_new / 2) - t)):
                break
            alpha /= 2
        else:
            return None
        if np.abs(u_new - u).max() < 1e-7:
            return _stencil(model, u_new, centre_new)
        u, f, centre = u_new, f_new, centre_new
    return None


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
    dof = model.n - model.p
    try:
        st = _newton(model, x0)
    except (ValueError, np.linalg.LinAlgError):
        st = None
    converged = st is not None
    if st is None:
        # Powell as the fallback: two parameters, no derivatives, slow but sure.
        best = optimize.minimize(model.profiled, np.clip(x0, LOG_THETA_LOW, LOG_THETA_HIGH), method="Powell",
                                 bounds=[(LOG_THETA_LOW, LOG_THETA_HIGH)] * 2, options={"xtol": 1e-5, "ftol": 1e-10})
        converged = bool(best.success)
        try:
            st = _stencil(model, best.x)
        except (ValueError, np.linalg.LinAlgError):
            st = None
        u = best.x
    else:
        u = st.u
    th_i, th_r = np.exp(u)
    beta, rss, _, _, XHX = model.gls(th_i, th_r)
    s2 = rss / dof
    if not s2 > 0:
        raise ValueError("no residual variation")
    cov = s2 * np.linalg.inv(XHX)
    est = np.array([th_i * s2, th_r * s2, s2])
    z = sps.norm.ppf((1 + level) / 2)
    lv = np.log(est)
    try:
        info = (st.full_hessian(dof) if st is not None else _hessian(model.full, lv)) / 2.0
        if not np.isfinite(info).all():
            raise np.linalg.LinAlgError("information not finite")
        cov_lv = np.linalg.inv(info)
        se_lv = np.sqrt(np.clip(np.diag(cov_lv), 0, None))
    except np.linalg.LinAlgError:
        se_lv = np.full(3, np.inf)
    with np.errstate(over="ignore"):   # a boundary estimate: the upper end is unbounded (inf)
        ci = {name: (float(np.exp(lv[k] - z * se_lv[k])), float(np.exp(lv[k] + z * se_lv[k])))
              for k, name in enumerate(COMPONENTS)}
    return MixedFit(systems=list(systems) if systems else [str(s) for s in range(n_sys)], beta=beta, cov_beta=cov,
                    variance={name: float(est[k]) for k, name in enumerate(COMPONENTS)}, variance_ci=ci,
                    n_ratings=int(y.size), n_items=model.I, n_raters=model.J, converged=converged,
                    level=level)
