"""Per-example gradient clipping fused into one backward pass, for networks of `nn.Linear` layers.

The tabular networks here (the risk classifiers, the growth quantile network) hold every parameter
in `nn.Linear` layers fed one row per example (or several rows per example, one person's subjects
or courses, as a (examples, rows, features) input: see `_squared_norms`). For such a layer the gradient of example i's loss
is an outer product, ∂L_i/∂W = b_i a_iᵀ (a_i the layer's input, b_i the gradient at its output),
so its norm needs no per-example gradient at all: ‖∂L_i/∂W‖² = ‖b_i‖² ‖a_i‖², and the bias adds
‖b_i‖². With every example's total norm, the clipped sum Σ_i c_i b_i a_iᵀ is one matrix product
(c_i = min(1, C / ‖g_i‖), Opacus's flat clipping). This is "book-keeping" ghost clipping (Bu et
al., 2023): the ghost-norm trick Opacus's `ghost` mode uses, without its second backward pass and
without Opacus's per-parameter bookkeeping each step, which on these small networks cost more than
the network itself (bench/privacy.py).

Anything else (embeddings, convolutions, deeper inputs) is refused here; `train_dp_sgd` then uses
one of Opacus's grad-sample modes. tests/test_fused_clipping.py checks the clipped sums against
Opacus's own per-sample gradients.
"""

from __future__ import annotations

import torch
from torch import nn


class FusedLinearClipping:
    """Hooks on every `nn.Linear` of `module` that turn one backward pass into clipped, summed
    per-example gradients.

    Use: forward, `loss.backward()` on a mean-reduced loss, then `clipped_sum(batch_size)` returns
    {parameter: Σ_i clip(∂L_i/∂parameter)}. `remove()` takes the hooks off.
    """

    def __init__(self, module: nn.Module, max_grad_norm: float):
        if max_grad_norm <= 0:
            raise ValueError("max_grad_norm must be > 0")
        self.max_grad_norm = max_grad_norm
        self.layers = [layer for layer in module.modules() if isinstance(layer, nn.Linear)]
        covered = {id(p) for layer in self.layers for p in layer.parameters()}
        others = sorted({type(m).__name__ for m in module.modules()
                         for p in m.parameters(recurse=False) if p.requires_grad and id(p) not in covered})
        if others:
            raise ValueError(f"fused clipping handles networks whose parameters all sit in nn.Linear layers; "
                             f"this one also trains {', '.join(others)}: use an Opacus grad_sample_mode")
        if not self.layers:
            raise ValueError("the network has no nn.Linear layer to train")
        self._inputs: dict[nn.Linear, torch.Tensor] = {}
        self._output_grads: dict[nn.Linear, torch.Tensor] = {}
        self._handles = [layer.register_forward_hook(self._keep_input) for layer in self.layers]

    def _keep_input(self, layer: nn.Linear, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        if not torch.is_grad_enabled():
            return
        activation = inputs[0]
        if activation.ndim not in (2, 3):
            raise ValueError(f"fused clipping needs (examples, features) or (examples, rows, features) into every "
                             f"nn.Linear; got an input of shape {tuple(activation.shape)}: use an Opacus "
                             f"grad_sample_mode")
        if layer in self._inputs:
            raise ValueError("fused clipping needs each nn.Linear used once per forward pass; this network "
                             "reuses one: use an Opacus grad_sample_mode")
        self._inputs[layer] = activation.detach()

        def keep_grad(grad: torch.Tensor) -> None:
            self._output_grads[layer] = grad.detach()

        output.register_hook(keep_grad)

    def clipped_sum(self, batch_size: int) -> dict[nn.Parameter, torch.Tensor]:
        """Σ over the batch of each example's gradient, clipped to `max_grad_norm` in total L2 norm.

        `batch_size` undoes the mean reduction of the loss: the gradient at a layer's output is
        ∂(mean loss)/∂out = ∂L_i/∂out / batch_size.
        """
        missing = [layer for layer in self.layers if layer not in self._output_grads]
        if missing:
            raise RuntimeError("call loss.backward() on this batch before clipped_sum()")
        grads = self._output_grads  # each is ∂L_i/∂out / batch_size: the scale is folded in below
        squared_norms = 0
        for layer in self.layers:
            squared_norms = squared_norms + self._squared_norms(layer, grads[layer], self._inputs[layer])
        # Opacus's flat clipping factor, epsilon and all, so both paths clip identically.
        factors = (self.max_grad_norm / (squared_norms.sqrt() * batch_size + 1e-6)).clamp(max=1.0) * batch_size
        summed = {}
        for layer in self.layers:
            grad, activation = grads[layer], self._inputs[layer]
            if grad.ndim == 2:
                scaled = grad * factors[:, None]
                weight, bias = scaled.T @ activation, scaled.sum(dim=0)
            else:  # an example's rows share one clip: Σ_i c_i Σ_k b_ik a_ikᵀ
                scaled = grad * factors[:, None, None]
                weight, bias = torch.einsum("ikp,ikq->pq", scaled, activation), scaled.sum(dim=(0, 1))
            if layer.weight.requires_grad:
                summed[layer.weight] = weight
            if layer.bias is not None and layer.bias.requires_grad:
                summed[layer.bias] = bias
        self._inputs.clear()
        self._output_grads.clear()
        return summed

    @staticmethod
    def _squared_norms(layer: nn.Linear, grad: torch.Tensor, activation: torch.Tensor) -> torch.Tensor:
        """Each example's squared gradient norm for one layer, up to the batch-size scale."""
        bias = 1.0 if layer.bias is not None else 0.0
        if grad.ndim == 2:  # ‖b aᵀ‖² = ‖b‖²‖a‖², and the bias adds ‖b‖²
            return grad.square().sum(dim=1) * (activation.square().sum(dim=1) + bias)
        # Several rows per example (a student's subjects, a teacher's courses): the weight gradient is
        # Σ_k b_k a_kᵀ, whose squared norm is Σ_kl (b_k·b_l)(a_k·a_l), the ghost norm of two Gram
        # matrices; the bias gradient is Σ_k b_k. Padding rows have b = 0 and add nothing.
        weight = (grad @ grad.transpose(1, 2) * (activation @ activation.transpose(1, 2))).sum(dim=(1, 2))
        return weight + bias * grad.sum(dim=1).square().sum(dim=1)

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
