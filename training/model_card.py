"""Model cards: what a registered model is for, what it promises, how well it does, and its limits.

One markdown page per model version, logged to its MLflow run (`model_card.md`) and set as the
registered version's description, so the registry UI and the data officer's pages show the same
text. The privacy section states the unit, the guarantee and how it was accounted; the audit
section the empirical lower bound that checks it.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ModelCard:
    name: str
    version: int | None
    purpose: str
    users: str
    label: str
    features: str
    data_release: str
    lake_snapshot: str
    unit_of_privacy: str
    epsilon: float
    delta: float
    accountant: str
    mechanism: str
    metrics: dict[str, float]
    limits: list[str]
    audits: list[dict] = field(default_factory=list)  # AuditResult.to_dict() of each attack

    def to_markdown(self) -> str:
        version = f" v{self.version}" if self.version is not None else ""
        lines = [
            f"# {self.name}{version}",
            "",
            f"**Intended use.** {self.purpose}",
            "",
            f"**Users.** {self.users}",
            "",
            f"**Predicts.** {self.label}",
            "",
            f"**Inputs.** {self.features}",
            "",
            f"**Data.** Release {self.data_release} (lake snapshot `{self.lake_snapshot or '-'}`).",
            "",
            "## Privacy guarantee",
            "",
            f"({self.epsilon:.3g}, {self.delta:.2g})-differential privacy with **{self.unit_of_privacy}** as the unit "
            f"of privacy: whatever one person's data, the distribution of this model changes by at most a factor "
            f"e^{self.epsilon:.3g} (plus probability {self.delta:.2g}). Mechanism: {self.mechanism}. "
            f"Accountant: {self.accountant}. Spent from the release's budget in the privacy ledger before training.",
            "",
            "## Metrics (held out from training)",
            "",
            "| metric | value |",
            "|---|---|",
            *[f"| {name} | {value:.4g} |" for name, value in self.metrics.items()],
        ]
        if self.audits:
            lines += [
                "",
                "## Membership-inference audits",
                "",
                "An empirical lower bound on ε: an attack that tells members from non-members better than the "
                "bound allows would disprove the guarantee. It is a check, not a proof.",
                "",
                "| model | attack | AUC | TPR @ 1% FPR | TPR @ 0.1% FPR | empirical ε lower bound |",
                "|---|---|---|---|---|---|",
                *[f"| {a.get('target', '')} | {a['attack']} | {a['auc']:.3f} | {a['tpr_at_1pct_fpr']:.3f} | "
                  f"{a['tpr_at_01pct_fpr']:.3f} | {a['epsilon_lower_bound']:.3f} |" for a in self.audits],
            ]
        lines += ["", "## Limits", "", *[f"- {limit}" for limit in self.limits], ""]
        return "\n".join(lines)
