"""DP-SGD over Opacus: a target (ε, δ) in, a trained module and the privacy actually spent out.

Poisson sampling, per-example clipping and noise calibrated by Opacus's own accountant registry
(PRV by default). The unit of privacy is one training example; callers guarantee one example per
person (the student), so the guarantee is per person.

`train_sgd` is the same loop without privacy (same data order machinery, batch size, epochs and
optimizer): the twin DP-SGD's cost and utility are measured against.

Speed. Per-example gradients are Opacus's `grad_sample_mode`: "hooks" (module hooks), "functorch"
(vmap), "ew" (expanded weights) or "ghost" (ghost clipping: per-example gradient *norms* without
materialising per-example gradients, two backward passes). `bench/privacy.py` measures them against
`train_sgd`; the default, "ew", was the fastest measured on these machines for the small tabular
networks here (88k examples, 2 cores: 4.4x the non-private time at batch 256, against hooks 4.9x,
ghost 5.2x, functorch 7.1x). What remains is Opacus's fixed cost per step (an O(n) Bernoulli draw
for Poisson sampling, clipping, noise) and per run (PRV noise calibration, 0.5-1.7 s), large next to
a non-private step of a network this small. Batches are gathered with one tensor index per batch
rather than one `__getitem__` per example, for both loops alike.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from opacus import PrivacyEngine
from opacus.accountants.utils import get_noise_multiplier
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


@dataclass(frozen=True)
class DPSGDConfig:
    target_epsilon: float
    target_delta: float
    max_grad_norm: float = 1.0
    epochs: int = 20
    expected_batch_size: int = 256
    learning_rate: float = 0.05
    accountant: str = "prv"
    grad_sample_mode: str = "ew"  # the fastest measured here (bench/privacy.py); "ghost" for wide models

    def __post_init__(self):
        if not self.target_epsilon > 0:
            raise ValueError("target_epsilon must be > 0")
        if not 0 < self.target_delta < 1:
            raise ValueError("target_delta must be in (0, 1)")
        if self.max_grad_norm <= 0 or self.epochs < 1 or self.expected_batch_size < 1:
            raise ValueError("max_grad_norm, epochs and expected_batch_size must be positive")
        if self.grad_sample_mode not in GRAD_SAMPLE_MODES:
            raise ValueError(f"grad_sample_mode must be one of {GRAD_SAMPLE_MODES}, not {self.grad_sample_mode!r}")


GRAD_SAMPLE_MODES = ("hooks", "functorch", "ew", "ghost")


class _BatchedTensors(TensorDataset):
    """A TensorDataset the DataLoader can gather a whole batch from with one index."""

    def __getitems__(self, indices: list[int]):
        index = torch.as_tensor(indices, dtype=torch.long)
        return tuple(tensor[index] for tensor in self.tensors)


def _stack(batch):
    return batch  # `__getitems__` already returns stacked tensors


def _loader(features: torch.Tensor, labels: torch.Tensor, batch_size: int, generator) -> DataLoader:
    return DataLoader(_BatchedTensors(features, labels), batch_size=batch_size, shuffle=True,
                      generator=generator, collate_fn=_stack)


def train_sgd(module: nn.Module, features: torch.Tensor, labels: torch.Tensor, loss_fn: nn.Module,
              config: DPSGDConfig, *, seed: int = 0) -> nn.Module:
    """The non-private twin: the same loop, batch size, epochs and optimizer, without DP."""
    if len(features) == 0:
        raise ValueError("cannot train on an empty dataset")
    torch.manual_seed(seed)
    loader = _loader(features, labels, min(config.expected_batch_size, len(features)),
                     torch.Generator().manual_seed(seed))
    optimizer = torch.optim.SGD(module.parameters(), lr=config.learning_rate, momentum=0.9)
    module.train()
    for _ in range(config.epochs):
        for batch_features, batch_labels in loader:
            optimizer.zero_grad()
            loss_fn(module(batch_features), batch_labels).backward()
            optimizer.step()
    return module


@dataclass(frozen=True)
class PrivacySpent:
    epsilon: float  # read back from the accountant after training (≤ target)
    delta: float
    noise_multiplier: float
    max_grad_norm: float
    sample_rate: float
    steps: int
    accountant: str
    unit: str = "one example (one student)"


def train_dp_sgd(
    module: nn.Module,
    features: torch.Tensor,
    labels: torch.Tensor,
    loss_fn: nn.Module,
    config: DPSGDConfig,
    *,
    seed: int = 0,
) -> tuple[nn.Module, PrivacySpent]:
    """Train `module` in place with DP-SGD; return the plain (unwrapped) module and the spend."""
    n = len(features)
    if n == 0:
        raise ValueError("cannot train on an empty dataset")
    if config.grad_sample_mode == "ghost" and labels.ndim != 1:
        # Ghost clipping needs one loss per example, shape (batch,); with (batch, 1) Opacus clips
        # nothing sensible and the model silently learns nothing.
        raise ValueError(f"ghost clipping needs 1-D labels and outputs (one per example); labels have shape "
                         f"{tuple(labels.shape)}")
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    loader = _loader(features, labels, min(config.expected_batch_size, n), generator)
    optimizer = torch.optim.SGD(module.parameters(), lr=config.learning_rate, momentum=0.9)
    with warnings.catch_warnings():
        # Opacus warns that secure_mode is off: torchcsprng has no build for torch 2.x (STACK-NOTES),
        # and that RDP's largest order was optimal while PRV searches its domain: neither is actionable.
        warnings.filterwarnings("ignore", message=".*Secure RNG turned off.*")
        warnings.filterwarnings("ignore", message=".*Optimal order is the largest alpha.*")
        engine = PrivacyEngine(accountant=config.accountant)
        # Calibrate for the steps the loader will really take. `make_private_with_epsilon` counts
        # int(epochs / sample_rate), which float rounding can put one step short (e.g. 93 batches),
        # and the PRV accountant's numerical error (±0.01 in ε) can land above the target: aim 2 %
        # below it, then check the spend.
        steps = config.epochs * len(loader)
        noise_multiplier = get_noise_multiplier(
            target_epsilon=config.target_epsilon * 0.98, target_delta=config.target_delta,
            sample_rate=1 / len(loader), steps=steps, accountant=config.accountant,
        )
        made = engine.make_private(
            module=module,
            optimizer=optimizer,
            data_loader=loader,
            criterion=loss_fn,
            noise_multiplier=noise_multiplier,
            max_grad_norm=config.max_grad_norm,
            grad_sample_mode=config.grad_sample_mode,
        )
    if config.grad_sample_mode == "ghost":
        # Ghost clipping wraps the loss: its backward runs the two passes that clip per example.
        private_module, private_optimizer, loss_fn, private_loader = made
    else:
        private_module, private_optimizer, private_loader = made
    private_module.train()
    with warnings.catch_warnings():
        # Opacus's per-sample hooks fire on a first layer whose inputs need no gradient; torch warns.
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        for _ in range(config.epochs):
            for batch_features, batch_labels in private_loader:
                if len(batch_features) == 0:
                    # Poisson sampling drew nobody. The step is still a draw of the mechanism:
                    # account for it (conservatively) rather than let it vanish from the ledger.
                    engine.accountant.step(noise_multiplier=private_optimizer.noise_multiplier,
                                           sample_rate=1 / len(loader))
                    continue
                private_optimizer.zero_grad()
                loss = loss_fn(private_module(batch_features), batch_labels)
                loss.backward()
                private_optimizer.step()
    # Accountant history: (noise multiplier, sample rate, steps) for each run of equal steps.
    noise_multiplier, sample_rate, _ = engine.accountant.history[-1]
    epsilon = float(engine.get_epsilon(config.target_delta))
    if epsilon > config.target_epsilon:
        # A claim must be true: never hand back a model whose spend passed what was promised.
        raise RuntimeError(f"DP-SGD spent ε={epsilon:.6f}, above the target {config.target_epsilon}")
    spent = PrivacySpent(
        epsilon=epsilon,
        delta=config.target_delta,
        noise_multiplier=float(noise_multiplier),
        max_grad_norm=config.max_grad_norm,
        sample_rate=float(sample_rate),
        steps=int(sum(steps for _, _, steps in engine.accountant.history)),
        accountant=config.accountant,
    )
    # Hand back the caller's own module, free of Opacus's per-sample hooks, so it pickles and
    # predicts like any torch module.
    private_module.remove_hooks()
    return private_module._module, spent
