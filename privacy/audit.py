"""Membership-inference audits: empirical lower bounds on the ε a trained model really spends.

Two attacks, each returning an `AuditResult`, run on a DP model and on its non-private twin:

* `threshold_audit` — the loss-threshold attack on a fitted model: a row whose label the model
  finds likely is guessed to be a training row (member). Members are the model's training rows,
  non-members held-out rows of the same population.
* `canary_audit` — the one-run audit of Steinke, Nasr and Jagielski, "Privacy Auditing with One
  (1) Training Run" (NeurIPS 2023, arXiv:2305.08846), Algorithm 1: m canaries, each put in the
  training set independently with probability 1/2, one training run, then "in" guessed for the
  k+ best-scored canaries, "out" for the k− worst, abstention on the rest.

What an audit proves: if ε_lb > 0, then with 95 % confidence (over the canaries' coin flips) the
training procedure is *not* (ε_lb, δ)-DP; an ε_lb above the claimed ε means the claim is false
(a bug in clipping, noise or accounting, or data reaching the model outside DP-SGD). The
threshold attack's ε_lb carries the same meaning only if its rows act as independent trials
(see `threshold_audit`); the canary audit's is a theorem for one training run.
What it does not prove: that the model is private. ε_lb is a lower bound from one particular
attack; a weak attack gives ε_lb = 0 on any model. The guarantee itself comes from the
accountant (privacy/dp_sgd.py), not from here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import brentq
from scipy.special import expit
from scipy.stats import beta as beta_distribution
from scipy.stats import binom
from sklearn.base import clone
from sklearn.metrics import roc_auc_score, roc_curve

# A model that gives a label probability 0 would make the loss infinite; a floor keeps scores
# finite and ordered (any floor below every real probability gives the same ranking).
_PROBABILITY_FLOOR = 1e-300


@dataclass(frozen=True)
class AuditResult:
    """What one membership-inference attack achieved against one model or training run."""

    attack: str  # "loss_threshold" or "one_run_canaries"
    n_members: int  # rows (canaries) in the training set
    n_nonmembers: int  # rows (canaries) not in it
    auc: float  # attack ROC AUC, members against non-members: 0.5 is guessing
    tpr_at_1pct_fpr: float  # largest true-positive rate at a false-positive rate ≤ 1 %
    tpr_at_01pct_fpr: float  # … at ≤ 0.1 % (0 when there are too few non-members to resolve it)
    epsilon_lower_bound: float  # with `confidence`, the procedure is not (ε_lb, δ)-DP
    delta: float  # the δ of the claim the bound is compared with
    confidence: float
    guesses: int | None = None  # canary audit: k+ + k−
    correct_guesses: int | None = None

    def contradicts(self, claimed_epsilon: float) -> bool:
        """True when the audit refutes a claimed (ε, δ): the empirical lower bound is above it."""
        return self.epsilon_lower_bound > claimed_epsilon

    def summary(self) -> str:
        """One line for the CLI and the model card."""
        guesses = "" if self.guesses is None else f"; {self.correct_guesses}/{self.guesses} guesses right"
        return (f"{self.attack}: AUC {self.auc:.3f}, TPR {self.tpr_at_1pct_fpr:.3f} at FPR 1 %, "
                f"{self.tpr_at_01pct_fpr:.3f} at 0.1 %; ε ≥ {self.epsilon_lower_bound:.3f} "
                f"(δ={self.delta:g}, {self.confidence:.0%} confidence){guesses}; "
                f"{self.n_members} members, {self.n_nonmembers} non-members")

    def to_dict(self) -> dict:
        """Every field as plain Python values (None left out), for `mlflow.log_dict` and the model card."""
        return {key: value for key, value in asdict(self).items() if value is not None}

    def to_metrics(self, prefix: str = "audit") -> dict[str, float]:
        """The numeric fields as `{prefix}.{attack}.{field}`, ready for `mlflow.log_metrics`."""
        return {f"{prefix}.{self.attack}.{key}": float(value)
                for key, value in self.to_dict().items() if not isinstance(value, str)}


def threshold_audit(model, *, X_members, y_members, X_nonmembers, y_nonmembers, delta: float | None = None,
                    confidence: float = 0.95) -> AuditResult:
    """Loss-threshold membership inference against a fitted classifier (anything with predict_proba).

    Score = log-likelihood of the true label (minus the loss); higher means "member". The ε lower
    bound is the hypothesis-testing one: an (ε, δ)-DP algorithm has TPR ≤ e^ε·FPR + δ and
    TNR ≤ e^ε·FNR + δ for every test (the hypothesis-testing view of DP: Kairouz, Oh and
    Viswanath, "The Composition Theorem for Differential Privacy", ICML 2015), so
    ε ≥ log((TPR_low − δ) / FPR_high) with one-sided Clopper–Pearson bounds, the audit of Jagielski,
    Ullman and Oprea, "Auditing Differentially Private Machine Learning" (NeurIPS 2020). The best
    threshold is taken with a Bonferroni correction over all thresholds and both directions.
    Caveat: that audit treats rows as independent trials, exact when each row is a separate
    training run; from one run it is an estimate. `canary_audit` has the one-run theorem.
    `delta` defaults to the model's own `delta` attribute (as on DPRiskClassifier).
    """
    delta = _claimed_delta(model, delta)
    X_members, y_members = _check_rows(X_members, y_members, "members")
    X_nonmembers, y_nonmembers = _check_rows(X_nonmembers, y_nonmembers, "non-members")
    if X_members.shape[1] != X_nonmembers.shape[1]:
        raise ValueError(f"members have {X_members.shape[1]} features but non-members "
                         f"{X_nonmembers.shape[1]}: they must be rows of the same table")
    return score_threshold_audit(label_log_likelihood(model, X_members, y_members),
                                 label_log_likelihood(model, X_nonmembers, y_nonmembers), delta=delta,
                                 confidence=confidence)


def score_threshold_audit(member_scores, nonmember_scores, *, delta: float, confidence: float = 0.95) -> AuditResult:
    """The loss-threshold attack on scores already computed, one per person (higher = "member").

    For models that are not classifiers (a recommender, a quantile network): the caller scores each
    training person and each held-out person, e.g. minus their loss, and the same bounds as in
    `threshold_audit` apply, with the same caveat.
    """
    member_scores = np.asarray(member_scores, dtype=np.float64)
    nonmember_scores = np.asarray(nonmember_scores, dtype=np.float64)
    if np.isnan(member_scores).any() or np.isnan(nonmember_scores).any():
        raise ValueError("audit scores must not contain NaN")
    if member_scores.size == 0 or nonmember_scores.size == 0:
        raise ValueError("loss_threshold: need at least one member and one non-member to score the attack")
    epsilon = epsilon_lower_bound_from_scores(member_scores, nonmember_scores, delta=delta, confidence=confidence)
    return _result("loss_threshold", member_scores, nonmember_scores, epsilon, delta, confidence)


def canary_audit(estimator, X, y, *, n_canaries: int | None = None, k_plus: int | None = None,
                 k_minus: int | None = None, delta: float | None = None, confidence: float = 0.95,
                 random_state: int = 0) -> AuditResult:
    """One-run canary audit (Steinke, Nasr and Jagielski 2023, Algorithm 1) of a training procedure.

    `estimator` (fitted or not; never modified) is cloned and trained once on the real rows X, y
    plus the canaries drawn in. Canaries are real rows with a wrong label, taken out of the real
    data: ordinary examples of the same domain (features inside the model's bounds, a valid
    label), so the DP guarantee — any one example, one student — covers each of them, and the
    bound is a valid test of the claim. A wrong label is the input-space canary a model can only
    fit by memorising it, which makes a leak show. The audit covers the procedure (estimator,
    data size, schedule), not the weights of one registered model.

    k+ and k− (default m // 10 each) are fixed before looking at the scores: choosing the best k
    afterwards would need a multiple-testing correction. The bound is `epsilon_lower_bound_one_run`.
    """
    delta = _claimed_delta(estimator, delta)
    X, y = _check_rows(X, y, "training data")
    n_canaries = min(1000, len(X) // 4) if n_canaries is None else n_canaries
    if not 1 <= n_canaries <= len(X):
        raise ValueError(f"n_canaries must be between 1 and the {len(X)} training rows (got {n_canaries})")
    k_plus = n_canaries // 10 if k_plus is None else k_plus
    k_minus = n_canaries // 10 if k_minus is None else k_minus
    if k_plus < 0 or k_minus < 0 or k_plus + k_minus > n_canaries:
        raise ValueError(f"k_plus + k_minus must be at most the {n_canaries} canaries (got {k_plus} + {k_minus})")
    classes = np.unique(y)
    if len(classes) < 2:
        raise ValueError("canaries need at least two classes in y (a canary carries a wrong label)")

    rng = np.random.default_rng(random_state)
    sources = rng.choice(len(X), n_canaries, replace=False)
    canary_X = X[sources]
    # Any label but the true one, uniformly (for binary: the other one).
    shift = rng.integers(1, len(classes), n_canaries)
    canary_y = classes[(np.searchsorted(classes, y[sources]) + shift) % len(classes)]
    included = rng.random(n_canaries) < 0.5  # S_i: each canary in with probability 1/2, independently
    real = np.ones(len(X), dtype=bool)
    real[sources] = False  # the canary's source row leaves, so its true label cannot mask it
    train_X = np.concatenate([X[real], canary_X[included]])
    train_y = np.concatenate([y[real], canary_y[included]])
    order = rng.permutation(len(train_X))  # no estimator should see the canaries as a block at the end
    model = clone(estimator).fit(train_X[order], train_y[order])

    scores = label_log_likelihood(model, canary_X, canary_y)
    # Rank by score alone (ties by canary index, which is independent of S): the guesses must not
    # depend on S except through the trained model.
    ranking = np.argsort(-scores, kind="stable")
    guessed_in, guessed_out = ranking[:k_plus], ranking[n_canaries - k_minus:]
    correct = int(included[guessed_in].sum() + (~included[guessed_out]).sum())
    epsilon = epsilon_lower_bound_one_run(canaries=n_canaries, guesses=k_plus + k_minus, correct=correct,
                                          delta=delta, confidence=confidence)
    return _result("one_run_canaries", scores[included], scores[~included], epsilon, delta, confidence,
                   guesses=k_plus + k_minus, correct_guesses=correct)


def epsilon_lower_bound_one_run(*, canaries: int, guesses: int, correct: int, delta: float,
                                confidence: float = 0.95) -> float:
    """Largest ε such that `correct` right guesses out of `guesses` would have p-value < 1 − confidence.

    Steinke, Nasr and Jagielski 2023 (arXiv:2305.08846), Theorem 3.1: under ε-DP the number W of
    correct guesses is stochastically dominated by Binomial(r, e^ε / (1 + e^ε)), r = k+ + k−, so
    p(ε) = P[Binomial(r, e^ε / (1 + e^ε)) ≥ v]. Under (ε, δ)-DP (their Theorem 5.2, computed as in
    their Algorithm 2 and the reference code of their appendix) the tail gains
    2·m·δ·max_{i=1..v} P[v − i ≤ Binomial < v] / i, with m the number of canaries. We use the δ
    version with the claim's own δ: the pure-ε bound (δ = 0) is larger and would wrongly refute
    an (ε, δ) claim. p(ε) grows with ε; ε_lb is where it crosses 1 − confidence (0 if p(0) ≥ it).
    """
    if not 0 <= correct <= guesses <= canaries:
        raise ValueError(f"need 0 ≤ correct ≤ guesses ≤ canaries (got {correct}, {guesses}, {canaries})")
    _check_level(delta, confidence)
    significance = 1 - confidence

    def p_value(epsilon: float) -> float:
        accuracy = expit(epsilon)  # e^ε / (1 + e^ε): the best any ε-DP guesser does per canary
        tail = binom.sf(correct - 1, guesses, accuracy)  # P[Binomial ≥ v]
        if delta > 0 and correct > 0:
            steps = np.arange(1, correct + 1)
            below = binom.cdf(correct - 1, guesses, accuracy) - binom.cdf(correct - 1 - steps, guesses, accuracy)
            tail += 2 * canaries * delta * np.max(below / steps)
        return min(float(tail), 1.0)

    if p_value(0.0) >= significance:
        return 0.0  # not even ε = 0 is rejected: the guesses look like coin flips
    high = 1.0
    while p_value(high) < significance:
        high *= 2  # terminates: as ε → ∞ the p-value → 1
    return float(brentq(lambda epsilon: p_value(epsilon) - significance, 0.0, high, xtol=1e-9))


def epsilon_lower_bound_from_scores(member_scores, nonmember_scores, *, delta: float,
                                    confidence: float = 0.95) -> float:
    """max over thresholds of log((TPR_low − δ) / FPR_high) and log((TNR_low − δ) / FNR_high), or 0.

    TPR_low, FPR_high, … are one-sided Clopper–Pearson bounds (Jagielski, Ullman and Oprea 2020),
    each at level (1 − confidence) / (2 · thresholds): a Bonferroni correction, so the best
    threshold is not a lucky pick. Guess "member" when score ≥ threshold.
    """
    members, nonmembers = np.sort(np.asarray(member_scores, float)), np.sort(np.asarray(nonmember_scores, float))
    if members.size == 0 or nonmembers.size == 0:
        raise ValueError("need at least one member score and one non-member score")
    _check_level(delta, confidence)
    thresholds = np.unique(np.concatenate([members, nonmembers]))
    level = (1 - confidence) / (2 * thresholds.size)
    true_positives = members.size - np.searchsorted(members, thresholds, side="left")
    false_positives = nonmembers.size - np.searchsorted(nonmembers, thresholds, side="left")
    tpr_low = _clopper_pearson_lower(true_positives, members.size, level)
    fpr_high = _clopper_pearson_upper(false_positives, nonmembers.size, level)
    tnr_low = _clopper_pearson_lower(nonmembers.size - false_positives, nonmembers.size, level)
    fnr_high = _clopper_pearson_upper(members.size - true_positives, members.size, level)
    ratios = np.concatenate([(tpr_low - delta) / fpr_high, (tnr_low - delta) / fnr_high])
    return float(np.log(np.max(ratios, initial=1.0)))  # a ratio ≤ 1 proves nothing: ε_lb = 0


def label_log_likelihood(model, X, y) -> np.ndarray:
    """log P_model(y | x) per row: minus the cross-entropy loss, the attack score (higher = member)."""
    probabilities = np.asarray(model.predict_proba(X), dtype=np.float64)
    if np.isnan(probabilities).any():
        raise ValueError(f"{type(model).__name__}.predict_proba returned NaN: scores cannot be ranked")
    column = np.searchsorted(model.classes_, y)
    column = np.clip(column, 0, len(model.classes_) - 1)
    if not np.array_equal(model.classes_[column], y):
        raise ValueError(f"labels {sorted(set(np.asarray(y).tolist()) - set(model.classes_.tolist()))} "
                         "are not among the model's classes_")
    chosen = probabilities[np.arange(len(y)), column]
    return np.log(np.maximum(chosen, _PROBABILITY_FLOOR))


def _result(attack, member_scores, nonmember_scores, epsilon, delta, confidence, **guesses) -> AuditResult:
    if member_scores.size == 0 or nonmember_scores.size == 0:
        raise ValueError(f"{attack}: need at least one member and one non-member to score the attack")
    is_member = np.concatenate([np.ones(member_scores.size), np.zeros(nonmember_scores.size)])
    scores = np.concatenate([member_scores, nonmember_scores])
    false_positive_rate, true_positive_rate, _ = roc_curve(is_member, scores, drop_intermediate=False)
    return AuditResult(
        attack=attack, n_members=int(member_scores.size), n_nonmembers=int(nonmember_scores.size),
        auc=float(roc_auc_score(is_member, scores)),
        # The first ROC point is (0, 0), so the maximum always exists.
        tpr_at_1pct_fpr=float(true_positive_rate[false_positive_rate <= 0.01].max()),
        tpr_at_01pct_fpr=float(true_positive_rate[false_positive_rate <= 0.001].max()),
        epsilon_lower_bound=epsilon, delta=float(delta), confidence=float(confidence), **guesses,
    )


def _clopper_pearson_lower(successes: np.ndarray, trials: int, level: float) -> np.ndarray:
    """One-sided lower confidence bound on a binomial rate: P[rate < bound] ≤ level."""
    safe = np.maximum(successes, 1)  # beta(0, ·) is undefined; those rows are set to 0 below
    return np.where(successes > 0, beta_distribution.ppf(level, safe, trials - safe + 1), 0.0)


def _clopper_pearson_upper(successes: np.ndarray, trials: int, level: float) -> np.ndarray:
    """One-sided upper confidence bound on a binomial rate: P[rate > bound] ≤ level."""
    safe = np.minimum(successes, trials - 1)
    return np.where(successes < trials, beta_distribution.ppf(1 - level, safe + 1, trials - safe), 1.0)


def _check_rows(X, y, what: str) -> tuple[np.ndarray, np.ndarray]:
    X, y = np.asarray(X), np.asarray(y)
    if X.ndim != 2:
        raise ValueError(f"{what}: X must be a 2-D matrix (rows × features), got shape {X.shape}")
    if y.ndim != 1 or len(y) != len(X):
        raise ValueError(f"{what}: X has {len(X)} rows but y has shape {y.shape}; one label per row is needed")
    if len(X) == 0:
        raise ValueError(f"{what}: the set is empty; an audit needs rows on both sides")
    return X, y


def _check_level(delta: float, confidence: float) -> None:
    if not 0 <= delta < 1:
        raise ValueError(f"delta must be in [0, 1), got {delta}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def _claimed_delta(model, delta: float | None) -> float:
    """The δ to audit against: given, or the model's own; a non-private twin must be told the DP model's δ."""
    if delta is None:
        delta = getattr(model, "delta", None)
        if delta is None:
            raise ValueError(f"{type(model).__name__} has no `delta`: pass delta=, the δ of the DP claim "
                             "this audit is compared with")
    return float(delta)
