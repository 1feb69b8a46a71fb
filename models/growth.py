"""Student Growth Percentiles (SGP): the exact, non-private reference for the growth model.

A student's growth percentile for a subject and term says where this term's score falls among
students with the same prior scores (Betebenner 2009). The method, as in the R `SGP` package:

1. Basis. Each of the last (up to three) prior scores gets its own cubic B-spline basis, interior
   knots at the 20/40/60/80th percentiles of that prior and boundaries at its minimum and maximum,
   like R's `bs(prior, knots=..., Boundary.knots=...)`. The basis comes from scikit-learn's
   `SplineTransformer` with explicit knots. Between the boundaries it spans exactly the space of
   R's `bs` plus an intercept, so fitted quantiles there are the same; beyond them it extends
   linearly (R extends the boundary cubics, which explode), which only matters when predicting
   for scores outside the range seen in `fit`.
2. Quantile regression (Koenker & Bassett 1978) of the current score on [1, bases] for the
   quantiles τ = 1/(q+1), ..., q/(q+1), i.e. 0.01, ..., 0.99 for the default q = 99.
3. Rearrangement. Separately fitted quantile curves can cross for some students; sorting each
   student's predicted quantiles is the rearrangement of Chernozhukov, Fernández-Val & Galichon
   (2010), which never makes the estimate worse and makes it monotone.
4. The growth percentile is the number of predicted quantiles *strictly below* the student's
   current score (the SGP package's `data1 < data2`: a score equal to a quantile is not above it),
   clipped to 1..99 (the package turns 0 into 1 and its top count into 99). With q ≠ 99 the count
   is rescaled to percent first. Ties need a rule: an exact fit passes through p students for
   every τ, and a student at the edge of the prior range (leverage near 1) can sit exactly on
   dozens of fitted quantiles at once, where rounding noise alone would swing "strictly below"
   between, say, 44 and 95. Quantiles within 1e-9 (relative) of the score count as ties, and half
   of the ties (rounded down) count as below: one tie keeps the package's strict rule, a run of
   ties gives its middle.

Orders. Not every student has three prior terms. As the SGP package does with its "orders",
one model is fitted per number of available priors j = 1..k (order j uses the j most recent
priors, on every student who has them) and each student is scored with the highest order they
have. A student's available priors are the unbroken run of non-missing (NaN) scores ending at the
most recent prior: a gap cuts off everything before it. The most recent prior must be present.
An order j ≥ 2 with fewer students than parameters is not fitted; its students fall back to the
highest fitted order below it.

Solver. Each quantile regression is the Koenker–Bassett linear program, solved exactly by HiGHS
(`scipy.optimize.linprog`) in its dual form — maximise y'a subject to X'a = (1 − τ) X'1,
0 ≤ a ≤ 1 — which has one row per basis column (about 22) instead of one per student; the
regression coefficients are the dual values of those rows. Above `preprocess_above` students,
the Portnoy & Koenker (1997) preprocessing (`rq.fit.pfnb` in R's quantreg) keeps it exact and
makes it fast: only the n^(2/3)·p^(1/2) students nearest the fitted quantile stay in the LP, the
others — whose residual sign is certain — collapse into two aggregate "glob" rows, and the small
problem's optimum is accepted only once every globbed sign is confirmed on all students, which
proves it optimal for the full problem (where scores tie and the optimum is not unique, it is one
of the optimal solutions). Measured on 2 cores, 99 quantiles, 3 priors (22 columns): 10k students
3.4 s, 100k 21 s, 1M 128 s, against 19 s, 283 s and about an hour (35 s per τ) for the full LP;
a whole fit of 1.2M students (orders 1–3 on 1.2M, 1.04M and 0.8M of them) 222 s.
`solver="statsmodels"` fits the same basis with statsmodels' `QuantReg` (iteratively reweighted
least squares, close to but not exactly the optimum) for benchmarks: 59 s for 99 quantiles at
10k, 5.6 s per τ at 100k (about 9 minutes for 99). statsmodels is a test-only dependency.

References
----------
Betebenner, D. W. (2009). Norm- and criterion-referenced student growth. Educational Measurement:
    Issues and Practice 28(4), 42–51.
Koenker, R. & Bassett, G. (1978). Regression quantiles. Econometrica 46(1), 33–50.
Portnoy, S. & Koenker, R. (1997). The Gaussian hare and the Laplacian tortoise. Statistical
    Science 12(4), 279–300.
Chernozhukov, V., Fernández-Val, I. & Galichon, A. (2010). Quantile and probability curves
    without crossing. Econometrica 78(3), 1093–1125.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.optimize import linprog
from sklearn.base import BaseEstimator
from sklearn.preprocessing import SplineTransformer
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

SOLVERS = ("highs", "statsmodels")


def quantile_levels(quantiles: int) -> np.ndarray:
    """The τ grid 1/(q+1), ..., q/(q+1): 0.01, ..., 0.99 for q = 99."""
    return np.arange(1, quantiles + 1) / (quantiles + 1)


def percentile_of_scores(quantiles: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Growth percentiles 1..99 from sorted predicted quantiles (n, q) and current scores (n,).

    Count of quantiles strictly below the score plus half (rounded down) of those equal to it
    within a relative 1e-9, rescaled from q quantiles to percent and clipped to 1..99.
    """
    scores = scores[:, None]
    tolerance = 1e-9 * np.maximum(1.0, np.abs(scores))  # exact-fit ties differ by ~1e-13
    below = np.count_nonzero(quantiles < scores - tolerance, axis=1)
    ties = np.count_nonzero(np.abs(quantiles - scores) <= tolerance, axis=1)
    count = below + ties // 2
    percent = np.rint(count * 100 / (quantiles.shape[1] + 1)).astype(int)  # = count when q = 99
    return np.clip(percent, 1, 99)


def fit_quantiles_highs(design: np.ndarray, target: np.ndarray, taus, *, preprocess_above: int | None = None,
                        random_state=None) -> np.ndarray:
    """Exact quantile-regression coefficients, shape (n_columns, len(taus)), by HiGHS.

    With more than `preprocess_above` rows, Portnoy–Koenker preprocessing solves small problems
    whose optimum is certified to be the full problem's; otherwise the full dual LP is solved.
    """
    design = np.asarray(design, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    taus = np.asarray(taus, dtype=np.float64)
    if preprocess_above is not None and design.shape[0] > preprocess_above:
        return _fit_preprocessed(design, target, taus, check_random_state(random_state))
    constraints = sparse.csc_array(design.T)  # B-spline rows are mostly zeros; convert once for all τ
    return np.column_stack([_solve_dual(constraints, design.sum(axis=0), target, tau) for tau in taus])


def fit_quantiles_statsmodels(design: np.ndarray, target: np.ndarray, taus, *, max_iter: int = 1000,
                              p_tol: float = 1e-6) -> np.ndarray:
    """The same coefficients from statsmodels `QuantReg` (IRLS), the usual Python reference."""
    try:
        from statsmodels.regression.quantile_regression import QuantReg
    except ImportError as error:  # a test/benchmark dependency only
        raise ImportError("solver='statsmodels' needs statsmodels: pip install statsmodels") from error
    import warnings

    from statsmodels.tools.sm_exceptions import IterationLimitWarning

    model = QuantReg(np.asarray(target, dtype=np.float64), np.asarray(design, dtype=np.float64))
    coefficients = []
    with warnings.catch_warnings():
        # IRLS often stops at the iteration limit near the optimum; the caller compares results.
        warnings.simplefilter("ignore", IterationLimitWarning)
        for tau in taus:
            coefficients.append(model.fit(q=float(tau), max_iter=max_iter, p_tol=p_tol).params)
    return np.column_stack(coefficients)


def _solve_dual(constraints, column_sums: np.ndarray, target: np.ndarray, tau: float) -> np.ndarray:
    # Dual of min Σ ρ_τ(y − Xβ): max y'a s.t. X'a = (1 − τ) X'1, a ∈ [0, 1]^n. β is the vector of
    # dual values of the equality rows; scipy reports them for the minimisation of −y'a, hence −.
    # Interior point with crossover (an exact vertex), presolve off: measured at 100k rows × 22
    # columns, HiGHS presolve costs 5× the solve, and dual simplex is 6× slower than IPM.
    result = linprog(-target, A_eq=constraints, b_eq=(1.0 - tau) * column_sums, bounds=(0.0, 1.0),
                     method="highs-ipm", options={"presolve": False})
    if result.status != 0:
        raise RuntimeError(f"HiGHS failed on the quantile regression at tau={tau:.3f}: {result.message}")
    return -result.eqlin.marginals


def _fit_preprocessed(design, target, taus, random):
    """Portnoy & Koenker (1997) preprocessing for a grid of τ, as R quantreg's `rq.fit.pfnb`.

    A subsample of m = n^(2/3) p^(1/2) rows gives a first fit for the first τ and, through its
    Gram matrix, the standard-error scale `band` of every row's fitted value. For each τ, the m
    rows whose scaled residuals r/band lie nearest the τ-th quantile stay free; the rest are
    surely below or above the fit and collapse into two "glob" rows. If the reduced optimum
    confirms every globbed sign, it is the full optimum. A few wrong signs are freed and the
    problem re-solved; many mean the window was too narrow and it doubles. Each τ starts from
    the residuals of the previous (neighbouring) τ's exact fit.
    """
    n_rows, n_columns = design.shape
    window = min(n_rows, int(round(n_rows ** (2 / 3) * np.sqrt(n_columns))))
    sample = random.choice(n_rows, size=window, replace=False)
    band = _fitted_value_scale(design, design[sample])
    first = _solve_dual(sparse.csc_array(design[sample].T), design[sample].sum(axis=0), target[sample], taus[0])
    residuals = target - design @ first
    coefficients = []
    for tau in taus:
        fitted, residuals = _fit_with_globs(design, target, tau, residuals, band, window)
        coefficients.append(fitted)
    return np.column_stack(coefficients)


def _fitted_value_scale(design, subsample):
    """sqrt(x'(S'S)⁺x) per row x: how far a fit on `subsample` S can be off at x, up to a factor.

    A pseudo-inverse, because coarse or clustered scores can leave a basis column (nearly) empty
    in the subsample and S'S singular.
    """
    eigenvalues, eigenvectors = np.linalg.eigh(subsample.T @ subsample)
    kept = eigenvalues > eigenvalues.max() * 1e-12
    whitened = (design @ eigenvectors[:, kept]) / np.sqrt(eigenvalues[kept])
    return np.maximum(np.sqrt(np.einsum("ij,ij->i", whitened, whitened)), 1e-12)


def _fit_with_globs(design, target, tau, residuals, band, window):
    n_rows = design.shape[0]
    while window < n_rows:
        # Free the `window` rows around the τ-th quantile of the scaled residuals.
        scaled = residuals / band
        low_q = max(1.0 / n_rows, tau - window / (2 * n_rows))
        high_q = min(tau + window / (2 * n_rows), (n_rows - 1.0) / n_rows)
        low_cut, high_cut = np.quantile(scaled, [low_q, high_q])
        below, above = scaled < low_cut, scaled > high_cut
        while True:
            free = ~(below | above)
            # Rows surely below (above) the fit enter the objective only through their sums: each
            # group becomes one row with the same residual sign. Sums as products with the 0/1
            # masks avoid copying the globbed rows.
            rows, targets = [design[free]], [target[free]]
            for glob in (below, above):
                if glob.any():
                    weights = glob.astype(np.float64)
                    rows.append((weights @ design)[None, :])
                    targets.append(np.array([weights @ target]))
            reduced, reduced_target = np.vstack(rows), np.concatenate(targets)
            fitted = _solve_dual(sparse.csc_array(reduced.T), reduced.sum(axis=0), reduced_target, tau)
            residuals = target - design @ fitted
            wrong_below, wrong_above = below & (residuals > 0), above & (residuals < 0)
            n_wrong = int(np.count_nonzero(wrong_below) + np.count_nonzero(wrong_above))
            if n_wrong == 0:
                return fitted, residuals  # every globbed sign confirmed: the full problem's optimum
            if n_wrong > 0.1 * window:
                window = min(2 * window, n_rows)  # too narrow: widen around the better fit
                break
            below &= ~wrong_below  # a few misjudged rows: free them and solve again
            above &= ~wrong_above
    fitted = _solve_dual(sparse.csc_array(design.T), design.sum(axis=0), target, tau)
    return fitted, target - design @ fitted


class StudentGrowthPercentiles(BaseEstimator):
    """Growth percentiles (1–99) from up to `max_priors` prior scores, by quantile regression.

    Parameters
    ----------
    max_priors : use at most this many of the most recent prior scores (the SGP package's max order).
    quantiles : number of equally spaced quantiles τ = 1/(q+1) .. q/(q+1) (99: 0.01 .. 0.99).
    knot_percentiles : interior knots of each prior's cubic B-spline, as fractions of its distribution.
    solver : "highs" (exact LP, the default) or "statsmodels" (QuantReg IRLS, for benchmarks).
    preprocess_above : above this many students in an order, "highs" uses Portnoy–Koenker
        preprocessing (the same exact optimum, much faster); None always solves the full LP.
    random_state : seed of the preprocessing subsample.

    Attributes
    ----------
    taus_ : (q,) quantile levels.
    knots_ : per prior column (oldest first), its boundary and interior knots.
    bases_ : per prior column, the fitted `SplineTransformer`.
    coef_ : {order: (1 + basis columns, q) coefficients}, order j using the j most recent priors.
    n_rows_by_order_ : {order: students the order was fitted on}.
    n_priors_ : number of prior columns used, the most recent min(k, max_priors) of the k given.
    n_features_in_ : number of prior columns given to `fit` (k).
    """

    _SCORING_BLOCK = 100_000  # students per block in `growth_percentile`

    def __init__(self, max_priors=3, quantiles=99, knot_percentiles=(0.2, 0.4, 0.6, 0.8), solver="highs",
                 preprocess_above=2_000, random_state=0):
        self.max_priors = max_priors
        self.quantiles = quantiles
        self.knot_percentiles = knot_percentiles
        self.solver = solver
        self.preprocess_above = preprocess_above
        self.random_state = random_state

    def fit(self, X, y):
        """Fit one set of quantile regressions per order.

        X : (n, k) prior scores, oldest first, NaN where an earlier prior is missing.
        y : (n,) current scores.
        """
        self._check_parameters()
        X, y = validate_data(self, X, y, ensure_all_finite="allow-nan", dtype=np.float64, y_numeric=True)
        one_prior_parameters = 1 + 3 + len(self.knot_percentiles)  # intercept + cubic B-splines
        if X.shape[0] < one_prior_parameters:
            raise ValueError(f"n_samples={X.shape[0]} students are fewer than the {one_prior_parameters} "
                             "parameters of a one-prior model: more data is needed")
        self.n_priors_ = min(X.shape[1], self.max_priors)
        X = X[:, X.shape[1] - self.n_priors_:]  # the most recent priors only
        available = self._available_priors(X)
        self.taus_ = quantile_levels(self.quantiles)
        self.knots_ = [self._knots(X[:, column], column) for column in range(X.shape[1])]
        self.bases_ = [
            SplineTransformer(knots=knots[:, None], degree=3, include_bias=False, extrapolation="linear")
            .fit(knots[:, None])
            for knots in self.knots_
        ]
        self.coef_, self.n_rows_by_order_ = {}, {}
        for order in range(1, X.shape[1] + 1):
            rows = available >= order
            design = self._design(X[rows], order)
            if design.shape[0] < design.shape[1]:  # never order 1: checked above
                break  # too few students with this many priors: they use the lower order
            self.coef_[order] = self._fit_coefficients(design, y[rows])
            self.n_rows_by_order_[order] = int(rows.sum())
        return self

    def predict_quantiles(self, X):
        """(n, q) conditional quantiles of the current score given the priors X, sorted per student."""
        check_is_fitted(self, "coef_")
        X = validate_data(self, X, reset=False, ensure_all_finite="allow-nan", dtype=np.float64)
        X = X[:, X.shape[1] - self.n_priors_:]
        orders = np.minimum(self._available_priors(X), max(self.coef_))
        predicted = np.empty((X.shape[0], len(self.taus_)))
        for order in np.unique(orders):
            rows = orders == order
            predicted[rows] = self._design(X[rows], order) @ self.coef_[order]
        return np.sort(predicted, axis=1)

    def growth_percentile(self, X, y):
        """Growth percentiles (int, 1..99) of current scores y (see `percentile_of_scores`)."""
        check_is_fitted(self, "coef_")
        X = validate_data(self, X, reset=False, ensure_all_finite="allow-nan", dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if y.ndim != 1 or y.shape[0] != X.shape[0] or not np.all(np.isfinite(y)):
            raise ValueError(f"y must be {X.shape[0]} finite current scores, one per student")
        # In blocks: 99 quantiles of 1.2M students would be about 1 GB at once.
        blocks = range(0, X.shape[0], self._SCORING_BLOCK)
        return np.concatenate([
            percentile_of_scores(self.predict_quantiles(X[start:start + self._SCORING_BLOCK]),
                                 y[start:start + self._SCORING_BLOCK])
            for start in blocks
        ])

    def _check_parameters(self):
        if not (isinstance(self.max_priors, (int, np.integer)) and self.max_priors >= 1):
            raise ValueError(f"max_priors must be a positive integer, got {self.max_priors!r}")
        if not (isinstance(self.quantiles, (int, np.integer)) and self.quantiles >= 1):
            raise ValueError(f"quantiles must be a positive integer, got {self.quantiles!r}")
        knot_percentiles = np.asarray(self.knot_percentiles, dtype=np.float64)
        if knot_percentiles.ndim != 1 or np.any(knot_percentiles <= 0) or np.any(knot_percentiles >= 1) \
                or np.any(np.diff(knot_percentiles) <= 0):
            raise ValueError("knot_percentiles must be increasing fractions strictly between 0 and 1")
        if self.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {SOLVERS}, got {self.solver!r}")
        if self.preprocess_above is not None and not (
                isinstance(self.preprocess_above, (int, np.integer)) and self.preprocess_above >= 1000):
            raise ValueError(f"preprocess_above must be None or an integer ≥ 1000, got {self.preprocess_above!r}")

    @staticmethod
    def _available_priors(X: np.ndarray) -> np.ndarray:
        """Per student, the length of the unbroken run of present priors ending at the most recent."""
        present = ~np.isnan(X)
        if not present[:, -1].all():
            raise ValueError("every student needs the most recent prior score (last column); "
                             f"{int((~present[:, -1]).sum())} rows have none: drop them before scoring")
        # Index of the last missing prior (−1 if none), counting from the oldest column.
        last_missing = np.where(~present, np.arange(X.shape[1]), -1).max(axis=1)
        return X.shape[1] - 1 - last_missing

    def _knots(self, prior: np.ndarray, column: int) -> np.ndarray:
        prior = prior[~np.isnan(prior)]
        if prior.size == 0:
            raise ValueError(f"prior column {column} has no scores at all")
        interior = np.quantile(prior, self.knot_percentiles)  # R's quantile() type 7, as the SGP package
        knots = np.unique(np.concatenate([[prior.min()], interior, [prior.max()]]))
        if knots.size < 2:
            raise ValueError(f"prior column {column} is constant ({prior[0]}): it cannot tell students apart")
        return knots  # tied percentiles (coarse scores) merge into one knot

    def _design(self, X: np.ndarray, order: int) -> np.ndarray:
        """[1, B(prior_1), ..., B(prior_order)] for the `order` most recent priors."""
        columns = range(X.shape[1] - order, X.shape[1])
        return np.hstack([np.ones((X.shape[0], 1))] + [self.bases_[c].transform(X[:, [c]]) for c in columns])

    def _fit_coefficients(self, design: np.ndarray, y: np.ndarray) -> np.ndarray:
        if self.solver == "statsmodels":
            return fit_quantiles_statsmodels(design, y, self.taus_)
        return fit_quantiles_highs(design, y, self.taus_, preprocess_above=self.preprocess_above,
                                   random_state=self.random_state)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # missing earlier priors select a lower order
        tags.target_tags.required = True
        return tags
