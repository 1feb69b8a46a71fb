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

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from opacus import PrivacyEngine
from opacus.accountants import create_accountant
from opacus.accountants.utils import get_noise_multiplier
from scipy.optimize import brentq
from torch import nn
from torch.utils.data import DataLoader, Sampler, TensorDataset

from privacy.fused_clipping import FusedLinearClipping


@dataclass(frozen=True)
class DPSGDConfig:
    target_epsilon: float
    target_delta: float
    max_grad_norm: float = 1.0
    epochs: int = 20
    expected_batch_size: int | None = None  # None: default_batch_size(n)
    learning_rate: float = 0.05
    accountant: str = "prv"
    grad_sample_mode: str = "fused"  # the fastest measured (bench/privacy.py); Opacus's modes otherwise

    def __post_init__(self):
        if not self.target_epsilon > 0:
            raise ValueError("target_epsilon must be > 0")
        if not 0 < self.target_delta < 1:
            raise ValueError("target_delta must be in (0, 1)")
        if self.max_grad_norm <= 0 or self.epochs < 1 or (self.expected_batch_size or 1) < 1:
            raise ValueError("max_grad_norm, epochs and expected_batch_size must be positive")
        if self.grad_sample_mode not in GRAD_SAMPLE_MODES:
            raise ValueError(f"grad_sample_mode must be one of {GRAD_SAMPLE_MODES}, not {self.grad_sample_mode!r}")


def default_batch_size(n: int) -> int:
    """The expected batch for n examples: n / 64, kept within [256, 4096].

    DP-SGD's noise per step is fixed (σC) while the clipped signal grows with the batch, so larger
    batches train better at the same ε until too few steps remain; 64 batches per epoch keeps enough
    steps. Larger batches also cost less per example (bench/privacy.py: 2.2x the non-private time at
    256, 1.9x at 1024, 1.7x at 4096, fused clipping, 30 epochs).
    """
    return int(min(4096, max(256, n // 64)))


GRAD_SAMPLE_MODES = ("fused", "hooks", "functorch", "ew", "ghost")


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


class PoissonBatchSampler(Sampler[list[int]]):
    """Poisson sampling in O(batch) per step: each example joins each batch independently with
    probability `sample_rate`.

    Drawing the batch size K ~ Binomial(n, q) and then K distinct examples uniformly is the same
    distribution as n independent Bernoulli(q) draws, without the O(n) draw Opacus's
    `UniformWithReplacementSampler` makes every step (0.37 ms at n = 88k here, as long as the
    non-private step itself). NumPy's `choice(replace=False)` uses Floyd's algorithm for small K.
    Like Opacus without `secure_mode` (no torchcsprng for torch 2.x, STACK-NOTES), the generator is
    a seeded PRNG, not a CSPRNG.
    """

    def __init__(self, n: int, sample_rate: float, steps: int, seed: int = 0):
        self.n, self.sample_rate, self.steps, self.seed = n, sample_rate, steps, seed
        self._epoch = 0

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self._epoch])  # a fresh, reproducible stream per epoch
        self._epoch += 1
        for _ in range(self.steps):
            size = rng.binomial(self.n, self.sample_rate)
            yield torch.from_numpy(rng.choice(self.n, size, replace=False))


def calibrate_noise(*, target_epsilon: float, target_delta: float, sample_rate: float, steps: int,
                    accountant: str = "prv") -> float:
    """The smallest noise multiplier (to 0.5 %) whose `accountant` ε at `target_delta` is ≤ the target.

    Opacus's `get_noise_multiplier` bisects from [0, 10] with ~15 PRV evaluations (0.8-0.9 s for
    a 1,700-step run, as long as the non-private training). RDP is cheap (0.1 s) and never tighter
    than PRV, so its σ is an upper end; a root search (Brent) from there at the PRV accountant's
    coarser grid (ε error 0.05, 0.04-0.1 s per evaluation) on log σ needs three or four evaluations. The coarse
    upper bound lies above the fine one, so the σ found is safe; the caller reads the fine ε back.
    """
    if accountant != "prv":
        return get_noise_multiplier(target_epsilon=target_epsilon, target_delta=target_delta,
                                    sample_rate=sample_rate, steps=steps, accountant=accountant)

    # PRV's upper bound is its estimate plus `eps_error`: search on the coarse grid (0.05; 0.04-0.1 s
    # per evaluation) for the estimate the fine grid (0.01) will read back, 2 % below the target.
    coarse_target = 0.98 * target_epsilon + (0.05 - 0.01)

    def log_excess(log_sigma: float) -> float:
        prv = create_accountant("prv")
        prv.history = [(math.exp(log_sigma), sample_rate, steps)]
        return math.log(prv.get_epsilon(target_delta, eps_error=0.05) / coarse_target)

    # A first σ: at low sampling rates RDP's (0.1 s there, and never far above PRV's); at high rates,
    # where RDP's own search takes seconds, the Gaussian mechanism's σ for T compositions at rate q,
    # q·sqrt(2T·ln(1/δ))/ε. Then widen by 1.5x until ε crosses the target on each side.
    if sample_rate <= 0.05:
        first = get_noise_multiplier(target_epsilon=target_epsilon, target_delta=target_delta,
                                     sample_rate=sample_rate, steps=steps, accountant="rdp")
    else:
        first = max(0.3, sample_rate * math.sqrt(2 * steps * math.log(1 / target_delta)) / target_epsilon)
    low = high = math.log(first)
    if log_excess(high) > 0:
        while log_excess(high) > 0:
            low, high = high, high + math.log(1.5)
    else:
        while log_excess(low) <= 0:
            high, low = low, low - math.log(1.5)
    # log ε is close to linear in log σ, so Brent's interpolation lands in a few evaluations.
    root = brentq(log_excess, low, high, xtol=0.002)
    return math.exp(root + 0.002)  # Brent brackets the root to xtol: take the safe side


def train_sgd(module: nn.Module, features: torch.Tensor, labels: torch.Tensor, loss_fn: nn.Module,
              config: DPSGDConfig, *, seed: int = 0) -> nn.Module:
    """The non-private twin: the same loop, batch size, epochs and optimizer, without DP."""
    if len(features) == 0:
        raise ValueError("cannot train on an empty dataset")
    torch.manual_seed(seed)
    batch_size = config.expected_batch_size or default_batch_size(len(features))
    loader = _loader(features, labels, min(batch_size, len(features)), torch.Generator().manual_seed(seed))
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
    if getattr(loss_fn, "reduction", "mean") != "mean":
        raise ValueError("DP-SGD here expects a mean-reduced loss (reduction='mean')")
    # Poisson sampling at q = 1 / (batches per epoch), as Opacus's DPDataLoader would, but drawn in
    # O(batch) per step (PoissonBatchSampler). Sampling and noise draw from fresh OS entropy, never
    # from `seed`: whoever knows the seed must not be able to replay the batches or subtract the noise.
    # `seed` fixes only what is not part of the mechanism (the caller's initialisation).
    batches_per_epoch = math.ceil(n / min(config.expected_batch_size or default_batch_size(n), n))
    sample_rate = 1 / batches_per_epoch
    expected_batch_size = int(n * sample_rate)  # Opacus's normalisation of the noisy sum
    entropy = np.random.SeedSequence().entropy
    loader = DataLoader(_BatchedTensors(features, labels), collate_fn=_stack,
                        batch_sampler=PoissonBatchSampler(n, sample_rate, batches_per_epoch, entropy))
    noise_generator = torch.Generator().manual_seed(entropy % 2**63)
    optimizer = torch.optim.SGD(module.parameters(), lr=config.learning_rate, momentum=0.9)
    # Calibrate for the steps the loader really takes (not Opacus's int(epochs / sample_rate)).
    with warnings.catch_warnings():
        # RDP's largest order was optimal while bracketing PRV's search: not actionable.
        warnings.filterwarnings("ignore", message=".*Optimal order is the largest alpha.*")
        noise_multiplier = calibrate_noise(
            target_epsilon=config.target_epsilon, target_delta=config.target_delta,
            sample_rate=sample_rate, steps=config.epochs * batches_per_epoch, accountant=config.accountant,
        )
    accountant = create_accountant(config.accountant)
    train = _train_fused if config.grad_sample_mode == "fused" else _train_opacus
    module = train(module, loader, loss_fn, optimizer, config, accountant=accountant,
                   noise_multiplier=noise_multiplier, sample_rate=sample_rate,
                   expected_batch_size=expected_batch_size, noise_generator=noise_generator)
    epsilon = float(accountant.get_epsilon(config.target_delta))
    if epsilon > config.target_epsilon:
        # A claim must be true: never hand back a model whose spend passed what was promised.
        raise RuntimeError(f"DP-SGD spent ε={epsilon:.6f}, above the target {config.target_epsilon}")
    spent = PrivacySpent(
        epsilon=epsilon,
        delta=config.target_delta,
        noise_multiplier=float(noise_multiplier),
        max_grad_norm=config.max_grad_norm,
        sample_rate=float(sample_rate),
        # Accountant history: (noise multiplier, sample rate, steps) for each run of equal steps.
        steps=int(sum(steps for _, _, steps in accountant.history)),
        accountant=config.accountant,
    )
    return module, spent


def _train_fused(module, loader, loss_fn, optimizer, config, *, accountant, noise_multiplier, sample_rate,
                 expected_batch_size, noise_generator) -> nn.Module:
    """DP-SGD with FusedLinearClipping: one backward pass per step, Opacus's noise and normalisation."""
    clipper = FusedLinearClipping(module, config.max_grad_norm)
    parameters = [p for p in module.parameters() if p.requires_grad]
    sizes = [p.numel() for p in parameters]
    noise_std = noise_multiplier * config.max_grad_norm
    module.train()
    try:
        for _ in range(config.epochs):
            for batch_features, batch_labels in loader:
                accountant.step(noise_multiplier=noise_multiplier, sample_rate=sample_rate)
                optimizer.zero_grad(set_to_none=True)
                if len(batch_features):
                    loss_fn(module(batch_features), batch_labels).backward()
                    clipped = clipper.clipped_sum(len(batch_features))
                else:  # Poisson sampling drew nobody: the mechanism still releases noise
                    clipped = {p: torch.zeros_like(p) for p in parameters}
                # One draw for all parameters (each its own slice), as Opacus adds N(0, σ²C²) to each.
                noise = torch.normal(0.0, noise_std, size=(sum(sizes),), generator=noise_generator)
                for parameter, parameter_noise in zip(parameters, noise.split(sizes)):
                    parameter.grad = clipped[parameter].add_(parameter_noise.view_as(parameter)).div_(
                        expected_batch_size)
                optimizer.step()
    finally:
        clipper.remove()
    return module


def _noise_only_step(private_optimizer, *, noise_std: float, expected_batch_size: int, generator) -> None:
    """One DP-SGD step of an empty batch: N(0, σ²C²) on every parameter, normalised like Opacus's
    noisy sums, stepped by the wrapped (non-private) optimizer (there is no per-sample gradient)."""
    private_optimizer.zero_grad(set_to_none=True)
    for parameter in private_optimizer.params:
        parameter.grad = torch.normal(0.0, noise_std, size=parameter.shape, generator=generator).div_(
            expected_batch_size)
    private_optimizer.original_optimizer.step()


def _train_opacus(module, loader, loss_fn, optimizer, config, *, accountant, noise_multiplier, sample_rate,
                  expected_batch_size, noise_generator) -> nn.Module:
    """DP-SGD through Opacus's PrivacyEngine in one of its grad-sample modes."""
    with warnings.catch_warnings():
        # Opacus warns that secure_mode is off: torchcsprng has no build for torch 2.x (STACK-NOTES).
        warnings.filterwarnings("ignore", message=".*Secure RNG turned off.*")
        engine = PrivacyEngine(accountant=config.accountant)
        engine.accountant = accountant  # one accountant for both paths: the caller reads it back
        made = engine.make_private(
            module=module,
            optimizer=optimizer,
            data_loader=loader,
            criterion=loss_fn,
            noise_multiplier=noise_multiplier,
            max_grad_norm=config.max_grad_norm,
            grad_sample_mode=config.grad_sample_mode,
            poisson_sampling=False,  # the loader already samples Poisson batches
            noise_generator=noise_generator,
        )
    if config.grad_sample_mode == "ghost":
        # Ghost clipping wraps the loss: its backward runs the two passes that clip per example.
        private_module, private_optimizer, loss_fn, private_loader = made
    else:
        private_module, private_optimizer, private_loader = made
    assert private_optimizer.expected_batch_size == expected_batch_size
    private_module.train()
    with warnings.catch_warnings():
        # Opacus's per-sample hooks fire on a first layer whose inputs need no gradient; torch warns.
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        for _ in range(config.epochs):
            for batch_features, batch_labels in private_loader:
                if len(batch_features) == 0:
                    # Poisson sampling drew nobody (probability e^-batch). The step is still a draw of
                    # the mechanism: it releases its noise (the clipped sum of nobody is zero) and is
                    # accounted, as on the fused path; skipping it would show that the batch was empty.
                    _noise_only_step(private_optimizer, noise_std=noise_multiplier * config.max_grad_norm,
                                     expected_batch_size=expected_batch_size, generator=noise_generator)
                    accountant.step(noise_multiplier=noise_multiplier, sample_rate=sample_rate)
                    continue
                private_optimizer.zero_grad()
                loss_fn(private_module(batch_features), batch_labels).backward()
                private_optimizer.step()
    # Hand back the caller's own module, free of Opacus's per-sample hooks, so it pickles and
    # predicts like any torch module.
    private_module.remove_hooks()
    return private_module._module
