"""WGAN-GP baseline: conformance, the gradient penalty against critics with known gradients,
architecture rules (no batch norm in the critic), optimiser settings, critic schedule."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from baselines.wgan_gp import (
    WGANGP,
    ResNetCritic,
    ResNetGenerator,
    WGANGPTask,
    create,
    gradient_penalty,
    penalty_from_outputs,
)
from genbench.errors import UsageError
from genbench.testing import toy_images
from genbench.training import EngineConfig, fit_task

TINY = {**WGANGP.conformance["overrides"], "log_every": 1}


pytestmark = pytest.mark.usefixtures("one_thread")


class Linear(nn.Module):
    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.flatten(1) * self.w.flatten()).sum(1)


@pytest.mark.parametrize("norm", [0.25, 1.0, 3.0])
def test_penalty_of_a_linear_critic_is_closed_form(norm):
    # f(x) = w.x has gradient w everywhere: GP = lambda * (||w|| - 1)^2 wherever x_hat lies.
    g = torch.Generator().manual_seed(0)
    w = torch.randn(1, 8, 8, generator=g)
    w = w / w.norm() * norm
    real, fake = torch.randn(5, 1, 8, 8, generator=g), torch.randn(5, 1, 8, 8, generator=g)
    u = torch.rand(5, 1, 1, 1, generator=g)
    gp = gradient_penalty(Linear(w), real, fake, u, lam=10.0)
    assert gp.item() == pytest.approx(10.0 * (norm - 1.0) ** 2, rel=1e-5, abs=1e-9)


def test_penalty_of_a_quadratic_critic_and_its_gradient():
    # f(x) = 0.5 ||x||^2: grad = x_hat, GP = lambda * mean((||x_hat|| - 1)^2); and the penalty
    # is differentiable w.r.t. critic parameters (create_graph) -- needed to train on it.
    real = torch.tensor([[[[3.0, 0.0]]], [[[0.0, 0.5]]]])
    fake = torch.zeros_like(real)
    u = torch.tensor([1.0, 1.0]).reshape(2, 1, 1, 1)  # x_hat = real
    scale = nn.Parameter(torch.tensor(1.0))

    def critic(x):
        return 0.5 * scale * (x.flatten(1) ** 2).sum(1)

    gp = gradient_penalty(critic, real, fake, u, lam=10.0)
    assert gp.item() == pytest.approx(10.0 * ((3.0 - 1.0) ** 2 + (0.5 - 1.0) ** 2) / 2)
    (dscale,) = torch.autograd.grad(gp, scale)
    # d/ds of 10 * mean((s * |x| - 1)^2) at s=1: 10 * mean(2 (|x| - 1) |x|)
    assert dscale.item() == pytest.approx(10.0 * (2 * 2.0 * 3.0 + 2 * (-0.5) * 0.5) / 2)


def test_penalty_uses_per_sample_gradients():
    x = torch.randn(4, 1, 16, 16, requires_grad=True)
    critic = ResNetCritic(16, ch=8, ch_max=16)
    _, norms = penalty_from_outputs(critic(x), x)
    singles = [penalty_from_outputs(critic(x[i : i + 1]), x)[1][i] for i in range(4)]
    assert torch.allclose(norms, torch.stack(singles), atol=1e-5)


def test_critic_has_layer_norm_and_no_batch_norm():
    d = ResNetCritic(32, ch=8, ch_max=32)
    kinds = {type(m) for m in d.modules()}
    assert not any(issubclass(k, nn.modules.batchnorm._BatchNorm) for k in kinds)
    gn = [m for m in d.modules() if isinstance(m, nn.GroupNorm)]
    assert gn and all(m.num_groups == 1 for m in gn)  # one group = layer norm over C, H, W
    g = ResNetGenerator(32, z_dim=16, ch=8, ch_max=32)
    assert g(torch.randn(3, 16)).shape == (3, 1, 32, 32)
    assert d(torch.randn(3, 1, 32, 32)).shape == (3,)


def test_optimisers_and_critic_schedule(tmp_path):
    gen = create("quick", resolution=16, **{**TINY, "n_critic": 5})
    assert gen.config.gp_lambda == 10.0
    task = WGANGPTask(gen)
    opts = task.build_optimizers(task.modules())
    for o in opts.values():
        assert o.defaults["betas"] == (0.0, 0.9)
    assert create("paper").config.lr == 1e-4 and create("paper").config.n_critic == 5
    # Each step draws n_critic real batches: the data position advances by 5 batches.
    fit_task(task, toy_images(40, 16), EngineConfig(steps=2, batch_size=8, device="cpu"),
             workdir=tmp_path)
    state = torch.load(tmp_path / "checkpoints" / "ckpt-00000002.pt", weights_only=True)
    assert state["data_position"] == 2 * 5 * 8
    assert {int(s["step"]) for s in state["optimizers"]["D"]["state"].values()} == {10}
    assert {int(s["step"]) for s in state["optimizers"]["G"]["state"].values()} == {2}
    assert state["optimizers"]["D"]["param_groups"][0]["betas"] == (0.0, 0.9)


def test_presets():
    q = create("quick")
    assert q.config.resolution == 32 and 1e5 < q.num_parameters() < 3e6
    assert create("quick", resolution=64).sample(2).shape == (2, 1, 64, 64)
    with pytest.raises(UsageError):
        create("quick", resolution=512)
