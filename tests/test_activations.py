"""The cores' own tanh equals torch's, values and gradients, under vmap too."""

import pytest
import torch
from torch import nn

from neuromimic.models import MLPCore
from neuromimic.models.activations import Tanh


@pytest.fixture
def x() -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    values = 5.0 * torch.randn(512, 256, generator=generator)
    values[0, :6] = torch.tensor([0.0, 1e-8, -1e-3, 30.0, -30.0, float("inf")])
    return values


def test_tanh_matches_torch_in_values_and_gradients(x):
    assert torch.allclose(Tanh()(x), torch.tanh(x), rtol=0, atol=2.4e-7)
    assert torch.allclose(Tanh()(x.double()), torch.tanh(x.double()), rtol=0, atol=1e-15)
    ours, torchs = x.clone().requires_grad_(), x.clone().requires_grad_()
    grad = torch.randn_like(x)
    Tanh()(ours).backward(grad)
    torch.tanh(torchs).backward(grad)
    assert torch.allclose(ours.grad, torchs.grad, rtol=0, atol=2e-6)
    assert torch.autograd.gradcheck(Tanh(), (torch.randn(5, 3, dtype=torch.double, requires_grad=True),))


def test_tanh_under_vmap_as_torchrls_gae_calls_the_critic(x):
    batched = x.reshape(8, 64, 256)
    assert torch.allclose(torch.vmap(Tanh())(batched), torch.tanh(batched), rtol=0, atol=2.4e-7)


def test_a_tanh_core_uses_it_and_is_still_an_nn_tanh():
    layers = [m for m in MLPCore(10, hidden_sizes=(8, 8), activation="tanh").modules() if isinstance(m, nn.Tanh)]
    assert len(layers) == 2 and all(type(m) is Tanh for m in layers)
