"""Fused per-example clipping must clip exactly what Opacus's per-sample gradients clip."""

import pytest
import torch
from opacus import GradSampleModule
from torch import nn

from privacy.fused_clipping import FusedLinearClipping


def _opacus_clipped_sum(module: nn.Module, features, labels, loss_fn, max_grad_norm: float):
    """Σ_i clip(g_i) from Opacus's own per-sample gradients (hooks mode), Opacus's flat clipping."""
    wrapped = GradSampleModule(module)
    loss_fn(wrapped(features), labels).backward()
    params = [p for p in module.parameters() if p.requires_grad]
    per_sample = [p.grad_sample.reshape(len(features), -1) for p in params]
    norms = torch.cat(per_sample, dim=1).norm(dim=1)
    factors = (max_grad_norm / (norms + 1e-6)).clamp(max=1.0)
    sums = {p: torch.einsum("i,i...->...", factors, p.grad_sample) for p in params}
    wrapped._close()
    return sums


@pytest.mark.parametrize("max_grad_norm", [0.05, 1.0, 100.0])  # binding for all, some, none
@pytest.mark.parametrize("outputs", [1, 5])
def test_fused_clipped_sum_equals_opacus_per_sample_clipping(max_grad_norm, outputs):
    torch.manual_seed(0)
    features = torch.randn(64, 7)
    if outputs == 1:
        layers = [nn.Linear(7, 16), nn.ReLU(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 1), nn.Flatten(0)]
        labels, loss_fn = (torch.rand(64) < 0.3).float(), nn.BCEWithLogitsLoss()
    else:  # several outputs per example, as the growth quantile network has
        layers = [nn.Linear(7, 16), nn.ReLU(), nn.Linear(16, outputs, bias=False)]
        labels, loss_fn = torch.randn(64, outputs), nn.MSELoss()
    reference = nn.Sequential(*layers)
    fused_net = nn.Sequential(*[_copy(layer) for layer in layers])

    expected = _opacus_clipped_sum(reference, features, labels, loss_fn, max_grad_norm)
    clipper = FusedLinearClipping(fused_net, max_grad_norm)
    loss_fn(fused_net(features), labels).backward()
    got = clipper.clipped_sum(len(features))
    clipper.remove()

    for ref_param, param in zip(reference.parameters(), fused_net.parameters()):
        torch.testing.assert_close(got[param], expected[ref_param], rtol=1e-4, atol=1e-6)


class _MaskedMSE(nn.Module):
    """Mean over examples of each example's summed squared error over its real (unmasked) rows."""

    reduction = "mean"

    def forward(self, output, target):
        values, mask = target[..., 0], target[..., 1]
        return ((output.squeeze(-1) - values).square() * mask).sum(dim=1).mean()


@pytest.mark.parametrize("max_grad_norm", [0.05, 1.0, 100.0])
def test_several_rows_per_example_are_clipped_as_one_example(max_grad_norm):
    """A student's subjects (or a teacher's courses) as (examples, rows, features): one clip per person."""
    torch.manual_seed(2)
    features = torch.randn(32, 6, 5)
    mask = (torch.rand(32, 6) < 0.7).float()  # padding rows carry mask 0
    labels = torch.stack([torch.randn(32, 6), mask], dim=-1)
    layers = [nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 1)]
    reference = nn.Sequential(*layers)
    fused_net = nn.Sequential(*[_copy(layer) for layer in layers])

    expected = _opacus_clipped_sum(reference, features, labels, _MaskedMSE(), max_grad_norm)
    clipper = FusedLinearClipping(fused_net, max_grad_norm)
    _MaskedMSE()(fused_net(features), labels).backward()
    got = clipper.clipped_sum(len(features))
    clipper.remove()
    for ref_param, param in zip(reference.parameters(), fused_net.parameters()):
        torch.testing.assert_close(got[param], expected[ref_param], rtol=1e-4, atol=1e-6)


def _copy(layer: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(layer)


def test_no_example_contributes_more_than_the_clipping_norm():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1), nn.Flatten(0))
    clipper = FusedLinearClipping(net, max_grad_norm=0.5)
    one = torch.randn(1, 3) * 1000  # one huge example
    nn.MSELoss()(net(one), torch.tensor([1e6])).backward()
    total = torch.cat([g.flatten() for g in clipper.clipped_sum(1).values()]).norm()
    assert total <= 0.5 + 1e-5


def test_networks_it_cannot_clip_are_refused_with_the_layer_named():
    with pytest.raises(ValueError, match="Embedding: use an Opacus grad_sample_mode"):
        FusedLinearClipping(nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 1)), 1.0)
    shared = nn.Linear(4, 4)
    clipper = FusedLinearClipping(nn.Sequential(shared, shared), 1.0)
    with pytest.raises(ValueError, match="reuses one"):
        nn.Sequential(shared, shared)(torch.randn(2, 4))
    clipper.remove()
    clipper = FusedLinearClipping(nn.Linear(4, 1), 1.0)
    with pytest.raises(ValueError, match=r"\(examples, rows, features\).*\(2, 3, 4, 4\)"):
        clipper.layers[0](torch.randn(2, 3, 4, 4))
    with pytest.raises(RuntimeError, match="backward"):
        FusedLinearClipping(nn.Linear(4, 1), 1.0).clipped_sum(2)
