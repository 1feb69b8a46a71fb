"""Differentially private Student Growth Percentiles: a monotone quantile network trained with DP-SGD.

The exact model (`models.growth.StudentGrowthPercentiles`) fits 99 quantile regressions by linear
programming. Its coefficients are a deterministic function of every student's scores, so they
cannot be released under differential privacy. This model estimates the same thing, the
conditional quantiles of the current score given the prior scores, with a small network trained
by DP-SGD (`privacy.dp_sgd.train_dp_sgd`), and scores students with the exact model's rule
(`percentile_of_scores`).

Why it is built this way:

* Unit of privacy: one student, i.e. one row (priors and current score together). Poisson
  sampling, per-student clipping and Gaussian noise bound what any one student can change in the
  network. The spend is read back from the PRV accountant (`privacy_`).
* Fixed bounds. Scores are clipped to `score_bounds`, which are fixed a priori from the test's
  scale, and mapped to [0, 1]. Ranges learnt from the private data (the exact model's knots at
  prior percentiles, its minimum and maximum) would leak outside the guarantee. Keep the bounds
  close to the scale's real range: the noise is fixed in scaled units, so bounds far wider than
  the scores cost accuracy (measured, scores 280–740 with ε = 1: median |DP − exact| 3 with bounds
  (200, 800), 9 with (0, 1000)).
* Monotone by construction. The last layer gives the median and a few shape coefficients. A
  fixed smooth basis over τ (Legendre polynomials) turns the coefficients into the q − 1 steps
  between neighbouring quantiles. Softplus makes each step positive, and the quantiles are the
  median plus or minus cumulative sums of the steps outwards. So the quantiles never cross: there
  is nothing to rearrange, and noise cannot make curves cross. With all coefficients 0 the steps
  are those of a normal distribution with sd `PRIOR_SPREAD` (a data-free starting shape). Under
  DP, a few coefficients that each move many quantiles (scale, skew, tails) learn far better than
  99 free outputs: the noise is spread over fewer parameters, and each parameter gets the summed
  signal of many quantile levels. Anchoring at the median, rather than at τ = 0.01, keeps the
  noisiest (tail) quantile from carrying all the others.
* Pinball loss. The τ-quantile minimises E ρ_τ(y − q) with ρ_τ(r) = max(τr, (τ − 1)r), the
  exact model's objective too. Here it is averaged over the q levels and the batch. Its
  derivative per output is bounded (|τ − 1{y < q}| ≤ 1), so clipping removes little signal.
* A linear path beside the MLP feeds every output. It starts at "median = most recent prior"
  (no growth: a data-free starting point). When scores correlate strongly over terms, the
  conditional median must be very precise relative to the scale, and a noisy MLP alone misses it
  (measured: median |DP − exact| 10 → 3 percentiles for scores correlated 0.97 on a 600-point
  scale; no change at correlation 0.7–0.8).
* Fused clipping. Every parameter sits in an `nn.Linear` fed one row per student, and the head
  has no parameters, so `train_dp_sgd`'s fused per-example clipping applies.
* Iterate averaging. The returned network holds an exponential moving average (decay
  `AVERAGE_DECAY`) of the DP-SGD iterates. DP-SGD's guarantee covers the whole sequence of noisy
  iterates, so averaging them is free post-processing. It removes much of the noise the last
  steps leave in the final iterate, which otherwise showed up as a shift of all percentiles
  (mean percentile 45 or 55 instead of 50).
* Heteroscedasticity, for large releases. On a percentile-rank scale (the engine's `pct`) the
  conditional spread depends strongly on the prior: measured on the synthetic city at 100k students
  (53k training students, priors correlated 0.93–0.95 with the current score), the exact model's
  10–90 % spread is 5 points for a last prior near 0 or 100 and 28 in the middle. Plain DP-SGD
  learns the median fast but the shape coefficients slowly: their gradients are about a tenth of
  the median's (a quantile moves by a step of the normal shape, ~0.1 of the scale, per unit of
  coefficient). The network then kept one spread (14 at the edges, 20 in the middle), for a
  median |DP − exact| of 4 and a p90 of 11-12 — and the same with ε = 50, or three times the
  epochs: a bias of the optimisation, not DP noise (plain Adam on the same network, no DP, reached
  1 and 5). Two changes fix it, both data-free: (1) `shape_gain` multiplies the shape outputs
  before the head (the last layer's initial shape weights are divided by it, so the starting shape
  is unchanged), which balances the shape's gradients against the median's; (2) `spline_knots`
  adds to the inputs a cubic B-spline basis of each scaled prior with knots equally spaced on the
  fixed bounds (the exact model's additive B-splines, with knots fixed a priori rather than at the
  priors' percentiles), so even the linear path can shape the spread by prior. Measured at ε = 1
  on those 53k students: median |DP − exact| 4 → 2, p90 11-12 → 7-8, Spearman 0.962 → 0.982
  (gain 3: 2-3 and 9; 30: 3 and 8-9; gain 10 alone: 4 and 10; splines alone: 4 and 12). On a 25k
  subsample 4/11 → 2-3/8-9, on a 10k subsample 5/11 → 4/12. Both add parameters and amplify the
  noise in the shape, which costs accuracy on small releases: on Tennessee STAR grade 3 (4.7k
  students) median 5-8 → 8-10, on the synthetic scores below 4-5 → 5-6 at 5k and 2 → 3 (p90 6-7 →
  9) at 10k; at 20k the two are equal (2, p90 5-6). So the defaults (None) turn both on from
  `LARGE_RELEASE` students: the model's capacity grows with the data, as a smoother's does. Like
  the batch size and δ, which the engine derives from it too, the number of students is treated as
  public (the usual DP-SGD convention).
* Priors. As in the exact model, a student's priors are the unbroken run of present scores ending
  at the most recent one (a gap cuts off everything before it), and the most recent one must be
  present. There is one network for all students instead of one model per order: a prior outside
  the run enters as 0, with a missingness indicator of 1.

Measured on 1 thread (synthetic 0–100 scores, 3 priors correlated 0.69–0.78 with the current
score, heteroscedastic noise, 15 % / 5 % missing oldest / middle prior), over repeated fits:
20k students at ε = 1, δ = 1e-5 give a median |DP − exact| of 2 percentiles, a 90th percentile
of 5–6 and a Spearman correlation of 0.99, in 2.3–3.6 s against 9–13 s for the exact fit; two exact
fits on independent samples of 20k differ by 1 (median) and 2 (p90). 5k students: median 2–3
(p90 6–8) at ε = 2, 3–5 (p90 9–11) at ε = 1.
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import torch
from scipy import stats
from sklearn.base import BaseEstimator
from sklearn.preprocessing import SplineTransformer
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import nn
from torch.nn import functional as F

from models.growth import percentile_of_scores, quantile_levels
from privacy.dp_sgd import DPSGDConfig, train_dp_sgd

PRIOR_SPREAD = 0.1  # starting conditional sd, as a fraction of the score range (data-free)
# Capacity for large releases (see "Heteroscedasticity" above): from this many students on, the
# defaults add a spline basis of each prior (SPLINE_KNOTS knots) and amplify the shape outputs.
LARGE_RELEASE = 20_000
SPLINE_KNOTS = 6  # as many intervals as the exact model's (knots at 0, .2, ..., 1 against its percentiles)
SHAPE_GAIN = 10.0
AVERAGE_DECAY = 0.95  # iterate average over about the last 20 DP-SGD steps (best of 0.95, 0.98, uniform)


class MonotoneQuantiles(nn.Module):
    """(batch, 1 + shape_terms) outputs → (batch, q) increasing quantiles, without parameters.

    Output 0 is the quantile at the level nearest τ = 0.5. The others are coefficients of
    Legendre polynomials in 2τ − 1 (at the midpoint of each step). Their sum goes through
    softplus and scales that step relative to the step of a normal distribution with sd
    `prior_spread`.
    """

    def __init__(self, taus: np.ndarray, shape_terms: int, prior_spread: float, shape_gain: float = 1.0):
        super().__init__()
        self.shape_gain = shape_gain
        taus = np.asarray(taus, dtype=np.float64)
        self.median = int(np.argmin(np.abs(taus - 0.5)))
        midpoints = (taus[1:] + taus[:-1]) / 2  # step k lies between τ_k and τ_k+1
        basis = np.polynomial.legendre.legvander(2 * midpoints - 1, shape_terms - 1).T  # (terms, q − 1)
        normal_steps = prior_spread * np.diff(stats.norm.ppf(taus)) / np.log(2)  # softplus(0) = log 2
        self.register_buffer("basis", torch.as_tensor(basis, dtype=torch.float32))
        self.register_buffer("normal_steps", torch.as_tensor(normal_steps, dtype=torch.float32))

    def forward(self, outputs: torch.Tensor) -> torch.Tensor:
        median = outputs[:, :1]
        gain = getattr(self, "shape_gain", 1.0)  # heads pickled before the gain existed had none
        steps = F.softplus(gain * outputs[:, 1:] @ self.basis) * self.normal_steps
        m = self.median
        above = median + steps[:, m:].cumsum(dim=1)
        below = median - steps[:, :m].flip(1).cumsum(dim=1).flip(1)  # summed outwards from the median
        return torch.cat([below, median, above], dim=1)


class QuantileNetwork(nn.Module):
    """features → MLP + linear path → monotone quantiles, in scaled score units."""

    def __init__(self, n_inputs: int, most_recent_prior: int, hidden_units: int, shape_terms: int,
                 taus: np.ndarray, shape_gain: float = 1.0):
        super().__init__()
        n_outputs = 1 + shape_terms
        self.mlp = nn.Sequential(
            nn.Linear(n_inputs, hidden_units), nn.ReLU(),
            nn.Linear(hidden_units, hidden_units), nn.ReLU(),
            nn.Linear(hidden_units, n_outputs),
        )
        self.linear = nn.Linear(n_inputs, n_outputs)
        with torch.no_grad():  # start from "no growth": median = the most recent prior
            self.linear.weight.zero_()
            self.linear.bias.zero_()
            self.linear.weight[0, most_recent_prior] = 1.0
        self.head = MonotoneQuantiles(taus, shape_terms, PRIOR_SPREAD, shape_gain)
        with torch.no_grad():  # the same starting shape whatever the gain
            self.mlp[-1].weight[1:] /= shape_gain
            self.mlp[-1].bias[1:] /= shape_gain

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(self.mlp(features) + self.linear(features))


class PinballLoss(nn.Module):
    """Quantile (pinball) loss averaged over the quantile levels and the batch."""

    reduction = "mean"  # what train_dp_sgd's fused clipping expects (it undoes the batch mean)

    def __init__(self, taus: np.ndarray):
        super().__init__()
        self.register_buffer("taus", torch.as_tensor(taus, dtype=torch.float32))

    def forward(self, predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        residuals = target[:, None] - predicted
        return torch.maximum(self.taus * residuals, (self.taus - 1) * residuals).mean()


class IterateAverage:
    """Exponential moving average of a module's parameters over its training steps.

    A forward pre-hook records the parameters before each training forward pass, i.e. the
    iterate after the previous step. `load_into` adds the final iterate and copies the average
    into the module. The weight is max(1 − decay, 1 / count), so early steps are not pulled
    towards the initialisation.
    """

    def __init__(self, module: nn.Module, decay: float):
        self.module, self.decay, self.count = module, decay, 0
        self.average = {name: p.detach().clone() for name, p in module.named_parameters()}
        self._handle = module.register_forward_pre_hook(self._record)

    def _record(self, module: nn.Module, inputs) -> None:
        if module.training:  # a training step is about to start; inference passes are no iterates
            self._add_iterate()

    @torch.no_grad()
    def _add_iterate(self) -> None:
        self.count += 1
        weight = max(1.0 - self.decay, 1.0 / self.count)
        for name, parameter in self.module.named_parameters():
            self.average[name].lerp_(parameter.detach(), weight)

    def remove(self) -> None:
        self._handle.remove()

    @torch.no_grad()
    def load_into(self, module: nn.Module) -> None:
        """Add the final iterate of `self.module` and copy the average into `module`."""
        self._add_iterate()
        for name, parameter in module.named_parameters():
            parameter.copy_(self.average[name])


class DPGrowthQuantiles(BaseEstimator):
    """Growth percentiles (1–99) from conditional quantiles learnt under (ε, δ)-DP, one student a unit.

    Parameters
    ----------
    score_bounds : (low, high) of the score scale, fixed a priori. Priors and current scores are
        clipped to it.
    max_priors : use at most this many of the most recent prior scores.
    quantiles : number of quantile levels τ = 1/(q+1) .. q/(q+1) (99: 0.01 .. 0.99).
    epsilon, delta : the privacy target of one `fit`.
    max_grad_norm : per-student clipping norm.
    epochs, batch_size, learning_rate : DP-SGD schedule. batch_size is the expected Poisson batch;
        None takes n / 16, kept within [256, 4096].
    hidden_units : width of each of the MLP's two hidden layers.
    shape_terms : smooth basis functions over τ that shape the quantile steps (1: a scaled normal).
    spline_knots : knots (equally spaced on the bounds, fixed a priori) of the cubic B-spline basis of
        each prior added to the inputs; 0 for none; None: `SPLINE_KNOTS` from `LARGE_RELEASE`
        students on, else 0 (see "Heteroscedasticity" in the module docstring).
    shape_gain : factor on the shape outputs before the head (a larger effective learning rate for
        the spread); None: `SHAPE_GAIN` from `LARGE_RELEASE` students on, else 1.
    random_state : seed of the initialisation only. DP sampling and noise never come from it (whoever
        knows the seed could replay them), so two fits differ.

    Attributes
    ----------
    module_ : the trained `QuantileNetwork` (scaled priors and indicators → scaled quantiles).
    privacy_ : `privacy.dp_sgd.PrivacySpent` of the fit.
    taus_ : (q,) quantile levels.
    n_priors_ : prior columns used, the most recent min(k, max_priors).
    n_features_in_ : prior columns given to `fit` (k).
    spline_knots_, shape_gain_ : the values used (resolved from None by the number of students).
    """

    _SCORING_BLOCK = 100_000  # students per block: 99 quantiles of 1M students would be 0.8 GB

    def __init__(self, score_bounds=(0.0, 100.0), max_priors=3, quantiles=99, epsilon=1.0, delta=1e-5,
                 max_grad_norm=1.0, epochs=20, batch_size=None, learning_rate=0.05, hidden_units=64,
                 shape_terms=6, spline_knots=None, shape_gain=None, random_state=0):
        self.score_bounds = score_bounds
        self.max_priors = max_priors
        self.quantiles = quantiles
        self.epsilon = epsilon
        self.delta = delta
        self.max_grad_norm = max_grad_norm
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.hidden_units = hidden_units
        self.shape_terms = shape_terms
        self.spline_knots = spline_knots
        self.shape_gain = shape_gain
        self.random_state = random_state

    def fit(self, X, y):
        """Train on priors X (n, k; oldest first, NaN where missing) and current scores y (n,).

        y is clipped to `score_bounds`, like the priors.
        """
        self._check_parameters()
        X, y = validate_data(self, X, y, ensure_all_finite="allow-nan", dtype=np.float64, y_numeric=True)
        self.n_priors_ = min(X.shape[1], self.max_priors)
        self.taus_ = quantile_levels(self.quantiles)
        large = X.shape[0] >= LARGE_RELEASE
        self.spline_knots_ = (SPLINE_KNOTS if large else 0) if self.spline_knots is None else int(self.spline_knots)
        self.shape_gain_ = (SHAPE_GAIN if large else 1.0) if self.shape_gain is None else float(self.shape_gain)
        features = torch.as_tensor(self._features(X), dtype=torch.float32)
        targets = torch.as_tensor(self._scale(y), dtype=torch.float32)
        torch.manual_seed(self.random_state)
        module = QuantileNetwork(features.shape[1], self.n_priors_ - 1, self.hidden_units, self.shape_terms,
                                 self.taus_, self.shape_gain_)
        config = DPSGDConfig(
            target_epsilon=self.epsilon, target_delta=self.delta, max_grad_norm=self.max_grad_norm,
            epochs=self.epochs, expected_batch_size=self.batch_size or self._default_batch_size(len(X)),
            learning_rate=self.learning_rate,
        )
        average = IterateAverage(module, AVERAGE_DECAY)
        try:
            module, self.privacy_ = train_dp_sgd(module, features, targets, PinballLoss(self.taus_), config,
                                                 seed=self.random_state)
        finally:
            average.remove()
        average.load_into(module)
        self.module_ = module.eval()
        return self

    def predict_quantiles(self, X):
        """(n, q) increasing conditional quantiles of the current score, in score units.

        They are clipped to `score_bounds`: the model learnt scores clipped to the bounds, whose
        quantiles lie within them. A score at the ceiling then ties with the quantiles there and
        gets the middle of the run (`percentile_of_scores`).
        """
        check_is_fitted(self, "module_")
        X = validate_data(self, X, reset=False, ensure_all_finite="allow-nan", dtype=np.float64)
        with torch.no_grad():
            scaled = self.module_(torch.as_tensor(self._features(X), dtype=torch.float32)).numpy()
        low, high = self.score_bounds
        return low + np.clip(scaled.astype(np.float64), 0.0, 1.0) * (high - low)

    def growth_percentile(self, X, y):
        """Growth percentiles (int, 1..99) of current scores y, by the exact model's rule.

        y is clipped to `score_bounds` as in `fit`: a score beyond the scale counts as the bound.
        """
        check_is_fitted(self, "module_")
        X = validate_data(self, X, reset=False, ensure_all_finite="allow-nan", dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if y.ndim != 1 or y.shape[0] != X.shape[0] or not np.all(np.isfinite(y)):
            raise ValueError(f"y must be {X.shape[0]} finite current scores, one per student")
        y = np.clip(y, *self.score_bounds)
        blocks = range(0, X.shape[0], self._SCORING_BLOCK)
        return np.concatenate([
            percentile_of_scores(self.predict_quantiles(X[start:start + self._SCORING_BLOCK]),
                                 y[start:start + self._SCORING_BLOCK])
            for start in blocks
        ])

    @staticmethod
    def _default_batch_size(n: int) -> int:
        # Larger batches than train_dp_sgd's n / 64: measured at 20k students and ε = 1, n / 16
        # (320 steps over 20 epochs) did as well as n / 32 and better than n / 8. Each step's noise
        # is divided by more students, and iterate averaging makes up for the fewer steps.
        return int(min(4096, max(256, n // 16)))

    def _features(self, X: np.ndarray) -> np.ndarray:
        """Scaled priors in the unbroken run ending at the most recent one (0 outside it) and, for
        each earlier prior, 1 where it is outside the run."""
        X = X[:, X.shape[1] - self.n_priors_:]
        present = ~np.isnan(X)
        if not present[:, -1].all():
            rows = np.flatnonzero(~present[:, -1])
            shown = ", ".join(map(str, rows[:5])) + (", ..." if rows.size > 5 else "")
            raise ValueError(f"every student needs the most recent prior score (last column); {rows.size} rows "
                             f"have none (rows {shown}): drop them before fitting or scoring")
        # A gap cuts off every earlier prior, as in the exact model's orders.
        in_run = np.flip(np.logical_and.accumulate(np.flip(present, axis=1), axis=1), axis=1)
        scaled = np.where(in_run, self._scale(np.nan_to_num(X)), 0.0)
        # The most recent prior is always present: it needs no indicator.
        columns = [scaled, (~in_run[:, :-1]).astype(np.float64)]
        knots = getattr(self, "spline_knots_", 0)  # models pickled before the basis existed had none
        if knots:
            basis = prior_basis(knots)
            columns += [basis.transform(scaled[:, [j]]) * in_run[:, [j]] for j in range(scaled.shape[1])]
        return np.hstack(columns)

    def _scale(self, scores: np.ndarray) -> np.ndarray:
        low, high = self.score_bounds
        return (np.clip(scores, low, high) - low) / (high - low)

    def _check_parameters(self):
        if self.spline_knots is not None and not (
                isinstance(self.spline_knots, (int, np.integer)) and (self.spline_knots == 0 or self.spline_knots >= 2)):
            raise ValueError(f"spline_knots must be None, 0 (no spline basis) or an integer ≥ 2, "
                             f"got {self.spline_knots!r}")
        if self.shape_gain is not None and not (isinstance(self.shape_gain, (int, float, np.integer, np.floating))
                                                and np.isfinite(self.shape_gain) and self.shape_gain > 0):
            raise ValueError(f"shape_gain must be None or a positive number, got {self.shape_gain!r}")
        bounds = np.asarray(self.score_bounds, dtype=np.float64)
        if bounds.shape != (2,) or not np.all(np.isfinite(bounds)) or not bounds[1] > bounds[0]:
            raise ValueError(f"score_bounds must be (low, high) with high > low, got {self.score_bounds!r}")
        for name in ("max_priors", "quantiles", "hidden_units", "shape_terms"):
            value = getattr(self, name)
            if not (isinstance(value, (int, np.integer)) and value >= 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # missing earlier priors
        tags.target_tags.required = True
        return tags


@functools.lru_cache(maxsize=8)
def prior_basis(knots: int) -> SplineTransformer:
    """Cubic B-splines on [0, 1] (a scaled prior) with `knots` equally spaced knots, fixed a priori.

    Built from the knots alone, never from scores: the exact model's knots sit at percentiles of
    the private priors, these at fixed points of the scale's bounds.
    """
    grid = np.linspace(0.0, 1.0, knots)[:, None]
    return SplineTransformer(knots=grid, degree=3, include_bias=False, extrapolation="constant").fit(grid)


def growth_agreement(dp_percentiles, exact_percentiles) -> dict:
    """How closely DP growth percentiles follow the exact ones for the same students.

    Returns median and 90th percentile of |DP − exact|, their Spearman correlation and n.
    """
    dp = np.asarray(dp_percentiles, dtype=np.float64)
    exact = np.asarray(exact_percentiles, dtype=np.float64)
    if dp.ndim != 1 or dp.shape != exact.shape or dp.size == 0:
        raise ValueError(f"need two non-empty 1-D arrays of equal length, got shapes {dp.shape} and {exact.shape}")
    differences = np.abs(dp - exact)
    return {
        "median_abs_diff": float(np.median(differences)),
        "p90_abs_diff": float(np.quantile(differences, 0.9)),
        "spearman": float(stats.spearmanr(dp, exact).statistic),
        "n": int(dp.size),
    }


def median_growth_by_group(percentiles, groups, *, min_group_size: int = 10) -> pd.DataFrame:
    """Median growth percentile and number of students per group (class, school, teacher, ...).

    Groups with fewer than `min_group_size` students are left out (suppressed). The model is
    private, but each student's percentile comes from their own scores. A median over a handful
    of students is close to one student's result (over one or two, it is exactly theirs), and
    anyone who knows the others' results can recover it. Students without a group (NaN/None)
    are left out too.

    Returns a DataFrame with columns group, students, median_growth_percentile, sorted by group.
    """
    if not (isinstance(min_group_size, (int, np.integer)) and min_group_size >= 1):
        raise ValueError(f"min_group_size must be a positive integer, got {min_group_size!r}")
    percentiles = np.asarray(percentiles)
    groups = np.asarray(groups)
    if percentiles.ndim != 1 or percentiles.shape != groups.shape:
        raise ValueError(f"need one group per percentile, got shapes {percentiles.shape} and {groups.shape}")
    frame = pd.DataFrame({"group": groups, "percentile": percentiles})
    summary = (frame.groupby("group", sort=True)["percentile"]
               .agg(students="size", median_growth_percentile="median").reset_index())
    kept = summary[summary["students"] >= min_group_size].reset_index(drop=True)
    return kept.astype({"students": int, "median_growth_percentile": float})
