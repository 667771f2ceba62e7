"""Building blocks shared by the PGGAN and StyleGAN baselines.

Equalised learning rate (Karras et al. 2018): weights are stored as N(0, 1) and multiplied
at run time by He's constant ``gain / sqrt(fan_in)``, so Adam's per-parameter step size acts
on every layer at the same effective speed. Pixel norm, minibatch standard deviation,
modulated/demodulated convolution (Karras et al. 2020), noise injection, the R1 penalty and
an adaptive discriminator augmentation that only uses operations valid for single-channel
medical images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

SQRT2 = math.sqrt(2.0)


def he_scale(fan_in: int, gain: float = SQRT2) -> float:
    """The equalised-lr run-time multiplier ``gain / sqrt(fan_in)``."""
    return gain / math.sqrt(fan_in)


class EqualizedLinear(nn.Module):
    """Linear layer with run-time He scaling; ``lr_mul`` slows a layer down (mapping nets)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        bias: bool = True,
        gain: float = SQRT2,
        lr_mul: float = 1.0,
        bias_init: float = 0.0,
    ) -> None:
        super().__init__()
        # Stored weight is N(0, 1/lr_mul^2); times lr_mul at run time gives N(0, 1) effective
        # values whose gradient steps are lr_mul times smaller.
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init) / lr_mul)) if bias else None
        self.scale = he_scale(in_features, gain) * lr_mul
        self.lr_mul = lr_mul

    def runtime_weight(self) -> torch.Tensor:
        return self.weight * self.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.bias * self.lr_mul if self.bias is not None else None
        return F.linear(x, self.runtime_weight(), b)


class EqualizedConv2d(nn.Module):
    """Convolution with run-time He scaling (stride 1, 'same' padding for odd kernels)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        padding: int | None = None,
        bias: bool = True,
        gain: float = SQRT2,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = he_scale(in_channels * kernel_size * kernel_size, gain)
        self.padding = kernel_size // 2 if padding is None else padding

    def runtime_weight(self) -> torch.Tensor:
        return self.weight * self.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.runtime_weight(), self.bias, padding=self.padding)


class PixelNorm(nn.Module):
    """Normalise each pixel's feature vector to unit mean square (PGGAN section 4.2)."""

    def __init__(self, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + self.eps)


class MinibatchStdDev(nn.Module):
    """Append one feature map: the mean over features of the per-group standard deviation.

    The batch is split into groups of ``group_size`` strided samples (sample i belongs to
    group ``i % (N // G)``, as in the reference implementation); within a group the
    std of every feature at every pixel is taken over the group members, averaged over
    channels and pixels, and broadcast as a constant map to each member. A batch whose size
    is not a multiple of the group size uses the largest group size that divides it.
    """

    def __init__(self, group_size: int = 4, eps: float = 1e-8) -> None:
        super().__init__()
        self.group_size = group_size
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = min(self.group_size, n)
        while n % g:
            g -= 1
        y = x.reshape(g, n // g, c, h, w)
        y = y - y.mean(dim=0, keepdim=True)
        y = torch.sqrt(y.pow(2).mean(dim=0) + self.eps)  # (N/G, C, H, W)
        y = y.mean(dim=(1, 2, 3))  # (N/G,)
        y = y.reshape(1, n // g, 1, 1, 1).expand(g, n // g, 1, h, w).reshape(n, 1, h, w)
        return torch.cat([x, y], dim=1)


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour doubling, the upsampling PGGAN uses (also between fade-in paths)."""
    return F.interpolate(x, scale_factor=2.0, mode="nearest")


def downsample2x(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, kernel_size=2)


class ModulatedConv2d(nn.Module):
    """StyleGAN2 convolution: per-sample style scales input channels, then (optionally)
    every output filter is rescaled to unit L2 norm ("demodulation"), replacing AdaIN.

    ``up=True`` doubles the resolution first (bilinear), a simpler stand-in for StyleGAN2's
    transposed convolution + FIR filter.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        style_dim: int,
        *,
        demodulate: bool = True,
        up: bool = False,
        eps: float = 1e-8,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        # Styles start at 1 so that a fresh network behaves like a plain convolution.
        self.affine = EqualizedLinear(style_dim, in_channels, gain=1.0, bias_init=1.0)
        self.demodulate = demodulate
        self.up = up
        self.eps = eps

    def modulated_weight(self, style: torch.Tensor) -> torch.Tensor:
        """Per-sample weights (B, out, in, k, k) for already-affined styles (B, in)."""
        w = self.weight[None] * self.scale * style[:, None, :, None, None]
        if self.demodulate:
            w = w * torch.rsqrt(w.pow(2).sum(dim=(2, 3, 4), keepdim=True) + self.eps)
        return w

    def forward(self, x: torch.Tensor, w_latent: torch.Tensor) -> torch.Tensor:
        # Equivalent to convolving each sample with ``modulated_weight`` but computed as
        # scale-inputs -> shared conv -> scale-outputs (StyleGAN2's non-fused path), which
        # is several times faster on CPUs than a grouped convolution with one group per sample.
        style = self.affine(w_latent)
        weight = self.weight * self.scale
        if self.up:
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        out = F.conv2d(x * style[:, :, None, None], weight, padding=self.kernel_size // 2)
        if self.demodulate:
            # ||W_o * s||^2 = sum_i s_i^2 * sum_k W_oik^2, for all samples at once
            sq = style.pow(2) @ weight.pow(2).sum(dim=(2, 3)).t()
            out = out * torch.rsqrt(sq + self.eps)[:, :, None, None]
        return out


class NoiseInjection(nn.Module):
    """Adds per-pixel Gaussian noise scaled by a learned per-layer strength (starts at 0)."""

    def __init__(self) -> None:
        super().__init__()
        self.strength = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        if noise is None:
            noise = torch.randn(x.shape[0], 1, x.shape[2], x.shape[3], device=x.device, dtype=x.dtype)
        return x + self.strength * noise


def gradient_penalty(critic, real: torch.Tensor, fake: torch.Tensor, **critic_kwargs) -> torch.Tensor:
    """WGAN-GP: mean over the batch of (||grad_x D(x_hat)|| - 1)^2 at random interpolates.

    The interpolation weights come from the global RNG (seeded by the training engine).
    """
    eps = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)
    x_hat = (eps * real.detach() + (1.0 - eps) * fake.detach()).requires_grad_(True)
    out = critic(x_hat, **critic_kwargs)
    (grad,) = torch.autograd.grad(out.sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1.0).pow(2).mean()


def r1_penalty(real_logits: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """R1 (Mescheder et al. 2018): mean over the batch of ||grad_x D(x)||^2 on real data.

    ``real`` must have ``requires_grad`` set before D was evaluated on it. Returns the squared
    norm without the gamma/2 factor, which the caller applies.
    """
    (grad,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
    return grad.flatten(1).pow(2).sum(dim=1).mean()


# ---------------------------------------------------------------------------------------------
# Adaptive discriminator augmentation, restricted to grayscale-safe operations.


@dataclass
class AdaConfig:
    """ADA (Karras et al. 2020b) with only geometry and single-channel intensity changes.

    ``speed_images``: images it takes for p to move from 0 to 1 at full imbalance (the
    reference uses 500k; small CPU runs need much less). ``interval``: steps between updates.
    """

    target: float = 0.6
    speed_images: int = 500_000
    interval: int = 4
    max_translate: float = 0.125  # fraction of the image side
    brightness_std: float = 0.2
    contrast_std: float = 0.5  # log2 scale
    initial_p: float = 0.0


class AdaptiveAugment:
    """Holds the augmentation probability p and applies the augmentations.

    Each operation is applied to each image independently with probability p: x-flip,
    rotation by a random multiple of 90 degrees, integer translation (reflect padding),
    brightness (additive) and contrast (multiplicative, about the image mean). Every op is
    differentiable w.r.t. the input, so fakes can be augmented in the generator step and
    R1 can be taken w.r.t. un-augmented reals. p is steered by r_t = E[sign(D(real))]: above
    the target means D is over-confident on reals (overfitting), so p rises; below, p falls.
    """

    def __init__(self, config: AdaConfig | None = None) -> None:
        self.config = config or AdaConfig()
        self.p = float(self.config.initial_p)
        self._sign_sum = 0.0
        self._count = 0
        self._steps = 0

    # -- steering -------------------------------------------------------------------------
    def accumulate(self, real_logits: torch.Tensor) -> None:
        s = torch.sign(real_logits.detach().float())
        self._sign_sum += float(s.sum())
        self._count += int(s.numel())

    @property
    def rt(self) -> float | None:
        return self._sign_sum / self._count if self._count else None

    def step(self, batch_size: int, reduce=None) -> None:
        """Call once per training step; every ``interval`` steps p moves toward the target.

        ``batch_size`` is the global batch; ``reduce`` (optional) sums ``(sign_sum, count)``
        over processes so that every rank computes the same p.
        """
        self._steps += 1
        if self._steps % self.config.interval:
            return
        total, count = self._sign_sum, float(self._count)
        if reduce is not None:
            total, count = reduce((total, count))
        if not count:
            return
        rt = total / count
        delta = batch_size * self.config.interval / self.config.speed_images
        self.p = float(min(max(self.p + math.copysign(delta, rt - self.config.target), 0.0), 1.0))
        self._sign_sum = 0.0
        self._count = 0

    def state_dict(self) -> dict[str, float | int]:
        return {"p": self.p, "sign_sum": self._sign_sum, "count": self._count, "steps": self._steps}

    def load_state_dict(self, state: dict) -> None:
        self.p = float(state["p"])
        self._sign_sum = float(state["sign_sum"])
        self._count = int(state["count"])
        self._steps = int(state["steps"])

    # -- augmenting -----------------------------------------------------------------------
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return augment(x, self.p, self.config)


def _reflect_index(idx: torch.Tensor, size: int) -> torch.Tensor:
    """Mirror indices outside [0, size) back in (reflection without repeating the edge)."""
    period = 2 * (size - 1) if size > 1 else 1
    idx = torch.remainder(idx, period)
    return torch.where(idx >= size, period - idx, idx)


def augment(x: torch.Tensor, p: float, config: AdaConfig) -> torch.Tensor:
    """Apply the grayscale-safe augmentation pipeline with per-image probability ``p``.

    Uses the global RNG. With p == 0 returns ``x`` unchanged (same tensor).
    """
    if p <= 0:
        return x
    n, _c, h, w = x.shape
    dev = x.device

    def chosen() -> torch.Tensor:
        return torch.rand(n, device=dev) < p

    # x-flip
    flip = chosen()
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    # rotations by k * 90 degrees (square images only; ours always are)
    if h == w:
        k = torch.randint(0, 4, (n,), device=dev) * chosen().long()
        rotated = [x, x.rot90(1, (2, 3)), x.rot90(2, (2, 3)), x.rot90(3, (2, 3))]
        stack = torch.stack(rotated, dim=0)  # (4, N, C, H, W)
        x = stack[k, torch.arange(n, device=dev)]
    # integer translation with reflect padding
    use = chosen()
    max_t = config.max_translate
    tx = torch.round((torch.rand(n, device=dev) * 2 - 1) * max_t * w) * use
    ty = torch.round((torch.rand(n, device=dev) * 2 - 1) * max_t * h) * use
    rows = _reflect_index(torch.arange(h, device=dev)[None, :] - ty.long()[:, None], h)  # (N, H)
    cols = _reflect_index(torch.arange(w, device=dev)[None, :] - tx.long()[:, None], w)  # (N, W)
    bidx = torch.arange(n, device=dev)[:, None, None]
    x = x.permute(0, 2, 3, 1)[bidx, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    # brightness: additive shift
    b = torch.randn(n, device=dev) * config.brightness_std * chosen()
    x = x + b[:, None, None, None]
    # contrast: scale about the per-image mean
    cfac = torch.exp2(torch.randn(n, device=dev) * config.contrast_std * chosen())
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * cfac[:, None, None, None] + mean
    return x.contiguous()
