"""Inception-v3 features (pool3 2048-d and unbiased logits 1008-d) as torch-fidelity defines them.

torch-fidelity's ``FeatureExtractorInceptionV3`` is the reference: uint8 RGB in, TF1-compatible
bilinear resize to 299x299, ``(x - 128) / 128``, the TF-patched Inception-v3 graph. This module
runs the same graph with the same weights file, faster on CPU and numerically the same (features
within 1e-4; checked in the tests):

- every BatchNorm is folded into its convolution, and the input normalisation into the first one;
- each convolution and its ReLU run as one oneDNN operation on CPU (where available);
- where a block average-pools before a 1x1 convolution the two are swapped (both are linear and
  the average weights sum to one, so bias and result are unchanged) and the pooling then touches
  fewer channels;
- a grayscale image is resized once (not three times) and the three identical input channels are
  folded into the first convolution's weights;
- the resize is two small matrix products with interpolation matrices built once per input size;
- activations are channels_last, under ``torch.inference_mode``.

Weights are never downloaded: ``resolve_inception_weights`` finds them in torch-fidelity's cache
or takes an explicit path, and says how to obtain them otherwise. Files load with
``weights_only=True``. Features are cached on disk keyed by the decoded set's content hash, the
weights' sha256 and the preprocessing.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genbench.errors import InputError, WeightsUnavailableError
from genbench.io.hashing import file_sha256

__all__ = [
    "INPUT_SIZE",
    "WEIGHTS_FILENAME",
    "InceptionFeatureExtractor",
    "InceptionFeatures",
    "InceptionV3Params",
    "default_cache_dir",
    "default_weights_path",
    "file_sha256",
    "load_inception_state_dict",
    "random_inception_state_dict",
    "resolve_inception_weights",
    "tf1_resize_matrix",
    "to_uint8_gray",
]

# The file name torch-fidelity gives the converted TF Inception weights in torch hub's cache.
WEIGHTS_FILENAME = "weights-inception-2015-12-05-6726825d.pth"
INPUT_SIZE = 299
BN_EPS = 1e-3
# Bumped whenever the features this module produces could change (part of the cache key).
IMPL_VERSION = "genbench-inception-fast-1"


# ---------------------------------------------------------------------------------------------
# Weights: where they live, how to get them, how to load them safely.


def default_weights_path() -> Path:
    """Where torch-fidelity keeps the weights after its (online) first use: ``<torch hub>/checkpoints``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILENAME


def _how_to_obtain(expected: Path) -> str:
    return (
        "genbench never downloads weights. Either pass --inception-weights PATH "
        f"(Python: EvalOptions(inception_weights=PATH)), or put the file {WEIGHTS_FILENAME} at "
        f"{expected}. To obtain it, run once on a machine with internet access: "
        "python -c \"from torch_fidelity.feature_extractor_inceptionv3 import "
        "FeatureExtractorInceptionV3 as F; F('inception-v3-compat', ['2048'])\" "
        f"and copy $(python -c 'import torch; print(torch.hub.get_dir())')/checkpoints/"
        f"{WEIGHTS_FILENAME} from there to this machine."
    )


def resolve_inception_weights(path: str | os.PathLike[str] | None = None) -> Path:
    """The Inception weights file to use: ``path`` if given, else torch-fidelity's cached copy.

    Raises ``WeightsUnavailableError`` (with instructions) when the file is not there.
    """
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise WeightsUnavailableError(
                f"Inception weights not found: {p} is not a file. " + _how_to_obtain(default_weights_path())
            )
        return p
    expected = default_weights_path()
    if expected.is_file():
        return expected
    raise WeightsUnavailableError(f"Inception-v3 weights not found at {expected}. " + _how_to_obtain(expected))


# ---------------------------------------------------------------------------------------------
# The parameter tree. Names follow torch-fidelity's module so that its weights file loads
# strictly (a wrong or truncated file is refused with a clear message).


class _ConvBN(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int | tuple[int, int], stride: int = 1,
                 padding: int | tuple[int, int] = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=BN_EPS)


def _block(spec: dict[str, tuple]) -> nn.Module:
    m = nn.Module()
    for name, args in spec.items():
        setattr(m, name, _ConvBN(*args))
    return m


def _block_a(cin: int, pool: int) -> nn.Module:
    return _block({
        "branch1x1": (cin, 64, 1), "branch5x5_1": (cin, 48, 1), "branch5x5_2": (48, 64, 5, 1, 2),
        "branch3x3dbl_1": (cin, 64, 1), "branch3x3dbl_2": (64, 96, 3, 1, 1),
        "branch3x3dbl_3": (96, 96, 3, 1, 1), "branch_pool": (cin, pool, 1),
    })


def _block_b(cin: int) -> nn.Module:
    return _block({
        "branch3x3": (cin, 384, 3, 2), "branch3x3dbl_1": (cin, 64, 1),
        "branch3x3dbl_2": (64, 96, 3, 1, 1), "branch3x3dbl_3": (96, 96, 3, 2),
    })


def _block_c(cin: int, c7: int) -> nn.Module:
    h, v = ((1, 7), 1, (0, 3)), ((7, 1), 1, (3, 0))
    return _block({
        "branch1x1": (cin, 192, 1),
        "branch7x7_1": (cin, c7, 1), "branch7x7_2": (c7, c7, *h), "branch7x7_3": (c7, 192, *v),
        "branch7x7dbl_1": (cin, c7, 1), "branch7x7dbl_2": (c7, c7, *v),
        "branch7x7dbl_3": (c7, c7, *h), "branch7x7dbl_4": (c7, c7, *v),
        "branch7x7dbl_5": (c7, 192, *h), "branch_pool": (cin, 192, 1),
    })


def _block_d(cin: int) -> nn.Module:
    return _block({
        "branch3x3_1": (cin, 192, 1), "branch3x3_2": (192, 320, 3, 2),
        "branch7x7x3_1": (cin, 192, 1), "branch7x7x3_2": (192, 192, (1, 7), 1, (0, 3)),
        "branch7x7x3_3": (192, 192, (7, 1), 1, (3, 0)), "branch7x7x3_4": (192, 192, 3, 2),
    })


def _block_e(cin: int) -> nn.Module:
    h, v = ((1, 3), 1, (0, 1)), ((3, 1), 1, (1, 0))
    return _block({
        "branch1x1": (cin, 320, 1),
        "branch3x3_1": (cin, 384, 1), "branch3x3_2a": (384, 384, *h), "branch3x3_2b": (384, 384, *v),
        "branch3x3dbl_1": (cin, 448, 1), "branch3x3dbl_2": (448, 384, 3, 1, 1),
        "branch3x3dbl_3a": (384, 384, *h), "branch3x3dbl_3b": (384, 384, *v),
        "branch_pool": (cin, 192, 1),
    })


class InceptionV3Params(nn.Module):
    """Holds the weights of torch-fidelity's Inception-v3 under the same state-dict names."""

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = _ConvBN(3, 32, 3, 2)
        self.Conv2d_2a_3x3 = _ConvBN(32, 32, 3)
        self.Conv2d_2b_3x3 = _ConvBN(32, 64, 3, 1, 1)
        self.Conv2d_3b_1x1 = _ConvBN(64, 80, 1)
        self.Conv2d_4a_3x3 = _ConvBN(80, 192, 3)
        self.Mixed_5b = _block_a(192, 32)
        self.Mixed_5c = _block_a(256, 64)
        self.Mixed_5d = _block_a(288, 64)
        self.Mixed_6a = _block_b(288)
        self.Mixed_6b = _block_c(768, 128)
        self.Mixed_6c = _block_c(768, 160)
        self.Mixed_6d = _block_c(768, 160)
        self.Mixed_6e = _block_c(768, 192)
        self.Mixed_7a = _block_d(768)
        self.Mixed_7b = _block_e(1280)
        self.Mixed_7c = _block_e(2048)
        self.fc = nn.Linear(2048, 1008)


def load_inception_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Load and validate a weights file (``weights_only=True``: never unpickles arbitrary objects)."""
    p = Path(path)
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for corrupt / pickled-object files
        first = (str(exc).strip().splitlines() or [""])[0][:160]
        raise InputError(f"cannot load Inception weights as a plain state dict ({type(exc).__name__}: "
                         f"{first})", str(p)) from None
    if not isinstance(state, dict):
        raise InputError("Inception weights file does not hold a state dict", str(p))
    params = InceptionV3Params()
    try:
        params.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise InputError(f"not torch-fidelity's Inception-v3 weights ({first})", str(p)) from None
    return params.state_dict()


def random_inception_state_dict(seed: int = 0, logit_scale: float = 4.0) -> dict[str, torch.Tensor]:
    """A randomly initialised Inception-v3 in torch-fidelity's format, for tests and benchmarks.

    Convolutions get Kaiming-normal weights (ReLU gain, fan-in) and BatchNorm mild random
    statistics: PyTorch's default conv init shrinks the activations layer after layer until the
    2048-d features are ~1e-8 (FID ~ 0, IS = 1), which would make any comparison vacuous.
    """
    gen = torch.Generator().manual_seed(seed)
    params = InceptionV3Params()
    with torch.no_grad():
        for mod in params.modules():
            if isinstance(mod, nn.Conv2d):
                fan_in = mod.weight[0].numel()
                mod.weight.normal_(0.0, (2.0 / fan_in) ** 0.5, generator=gen)
            elif isinstance(mod, nn.BatchNorm2d):
                c = mod.num_features
                mod.weight.copy_(1.0 + 0.1 * torch.randn(c, generator=gen))
                mod.bias.copy_(0.1 * torch.randn(c, generator=gen))
                mod.running_mean.copy_(0.1 * torch.randn(c, generator=gen))
                mod.running_var.copy_(1.0 + 0.2 * torch.rand(c, generator=gen))
        params.fc.weight.normal_(0.0, logit_scale / 2048**0.5, generator=gen)
        params.fc.bias.normal_(0.0, 0.1, generator=gen)
    return params.state_dict()


# ---------------------------------------------------------------------------------------------
# Preprocessing.


def to_uint8_gray(images: torch.Tensor) -> torch.Tensor:
    """Canonical (N,1,H,W) float in [-1,1] -> uint8 (N,1,H,W); uint8 input is passed through."""
    if images.dtype == torch.uint8:
        return images
    from genbench.imageset import quantize_uint8

    return quantize_uint8(images)


def tf1_resize_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """(n_out, n_in) matrix of TF1 bilinear resizing (align_corners=False, no half-pixel offset).

    Sample positions are computed in float32 exactly as torch-fidelity's
    ``interpolate_bilinear_2d_like_tensorflow1x`` does, so the same source pixels and weights are
    used (a float64 position could round to a different floor for some rows).
    """
    pos = torch.arange(0, n_out, 1, dtype=torch.float32) * torch.tensor(n_in / n_out, dtype=torch.float32)
    lo = pos.long()
    hi = (lo + 1).clamp_max(n_in - 1)
    frac = pos - lo.float()
    m = torch.zeros(n_out, n_in, dtype=torch.float32)
    rows = torch.arange(n_out)
    m.index_put_((rows, lo), 1.0 - frac, accumulate=True)
    m.index_put_((rows, hi), frac, accumulate=True)
    return m


# ---------------------------------------------------------------------------------------------
# The fused network.


def _probe_fused_conv_relu() -> bool:
    """Whether oneDNN's fused convolution+ReLU op is usable here (and agrees with conv then relu)."""
    op = getattr(getattr(torch.ops, "mkldnn", None), "_convolution_pointwise", None)
    if op is None or not torch.backends.mkldnn.is_available():
        return False
    try:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(1, 4, 5, 5, generator=g).contiguous(memory_format=torch.channels_last)
        w = torch.randn(3, 4, 3, 3, generator=g).contiguous(memory_format=torch.channels_last)
        b = torch.randn(3, generator=g)
        y = op(x, w, b, [1, 1], [1, 1], [1, 1], 1, "relu", [], "")
        return bool(torch.allclose(y, F.relu(F.conv2d(x, w, b, 1, 1)), atol=1e-5))
    except Exception:  # noqa: BLE001 - any failure means: use the plain ops
        return False


_FUSED: bool | None = None


def _fused_available() -> bool:
    global _FUSED
    if _FUSED is None:
        _FUSED = _probe_fused_conv_relu()
    return _FUSED


@dataclass
class _Conv:
    """A convolution with BatchNorm folded in."""

    weight: torch.Tensor
    bias: torch.Tensor
    stride: int
    padding: tuple[int, int]
    fused: bool = False  # use oneDNN's conv+ReLU in one pass (CPU)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Convolution without activation."""
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding)

    def relu(self, x: torch.Tensor) -> torch.Tensor:
        """ReLU(convolution): one pass over the output where oneDNN can fuse them (a ReLU pass
        was ~17% of the CPU time otherwise)."""
        if self.fused and x.device.type == "cpu":
            return torch.ops.mkldnn._convolution_pointwise(
                x, self.weight, self.bias, list(self.padding), [self.stride, self.stride], [1, 1], 1,
                "relu", [], "")
        return F.relu_(F.conv2d(x, self.weight, self.bias, self.stride, self.padding))


def _fold(state: dict[str, torch.Tensor], prefix: str, stride: int = 1,
          padding: int | tuple[int, int] = 0) -> _Conv:
    w = state[f"{prefix}.conv.weight"].double()
    gamma, beta = state[f"{prefix}.bn.weight"].double(), state[f"{prefix}.bn.bias"].double()
    mean, var = state[f"{prefix}.bn.running_mean"].double(), state[f"{prefix}.bn.running_var"].double()
    scale = gamma / torch.sqrt(var + BN_EPS)
    pad = (padding, padding) if isinstance(padding, int) else tuple(padding)
    return _Conv((w * scale[:, None, None, None]).float(), (beta - mean * scale).float(), stride, pad)


def _avg3(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)


class _FastInception:
    """Inference-only Inception-v3: folded BatchNorm, fused conv+ReLU, pool-branch reordering.

    Every branch's 1x1 convolution runs separately: merging them into one wider convolution
    saves little GEMM time but its channel slices are strided in channels_last and each one
    was copied before the next convolution.
    """

    def __init__(self, state: dict[str, torch.Tensor], device: torch.device) -> None:
        s = state
        first = _fold(s, "Conv2d_1a_3x3", 2)
        # Fold x -> (x - 128) / 128 into the first conv: it has no padding, so every tap sees data.
        w = first.weight.double() / 128.0
        b = first.bias.double() - w.sum(dim=(1, 2, 3)) * 128.0
        self.conv1_rgb = _Conv(w.float(), b.float(), 2, (0, 0))
        # Grayscale replicated to RGB: the three channels are equal, so sum their weights.
        self.conv1_gray = _Conv(w.sum(dim=1, keepdim=True).float(), b.float(), 2, (0, 0))
        self.stem = [_fold(s, "Conv2d_2a_3x3"), _fold(s, "Conv2d_2b_3x3", 1, 1)]
        self.stem2 = [_fold(s, "Conv2d_3b_1x1"), _fold(s, "Conv2d_4a_3x3")]

        def f(name: str, stride: int = 1, padding: int | tuple[int, int] = 0) -> _Conv:
            return _fold(s, name, stride, padding)

        h7, v7, h3, v3 = (0, 3), (3, 0), (0, 1), (1, 0)
        self.a_blocks = [
            ([f(f"{n}.branch1x1")],
             [f(f"{n}.branch5x5_1"), f(f"{n}.branch5x5_2", 1, 2)],
             [f(f"{n}.branch3x3dbl_1"), f(f"{n}.branch3x3dbl_2", 1, 1), f(f"{n}.branch3x3dbl_3", 1, 1)],
             f(f"{n}.branch_pool"))
            for n in ("Mixed_5b", "Mixed_5c", "Mixed_5d")
        ]
        n = "Mixed_6a"
        self.b_block = ([f(f"{n}.branch3x3", 2)],
                        [f(f"{n}.branch3x3dbl_1"), f(f"{n}.branch3x3dbl_2", 1, 1), f(f"{n}.branch3x3dbl_3", 2)])
        self.c_blocks = [
            ([f(f"{n}.branch1x1")],
             [f(f"{n}.branch7x7_1"), f(f"{n}.branch7x7_2", 1, h7), f(f"{n}.branch7x7_3", 1, v7)],
             [f(f"{n}.branch7x7dbl_1"), f(f"{n}.branch7x7dbl_2", 1, v7), f(f"{n}.branch7x7dbl_3", 1, h7),
              f(f"{n}.branch7x7dbl_4", 1, v7), f(f"{n}.branch7x7dbl_5", 1, h7)],
             f(f"{n}.branch_pool"))
            for n in ("Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e")
        ]
        n = "Mixed_7a"
        self.d_block = ([f(f"{n}.branch3x3_1"), f(f"{n}.branch3x3_2", 2)],
                        [f(f"{n}.branch7x7x3_1"), f(f"{n}.branch7x7x3_2", 1, h7),
                         f(f"{n}.branch7x7x3_3", 1, v7), f(f"{n}.branch7x7x3_4", 2)])
        self.e_blocks = [
            (n == "Mixed_7b", f(f"{n}.branch1x1"),
             f(f"{n}.branch3x3_1"), f(f"{n}.branch3x3_2a", 1, h3), f(f"{n}.branch3x3_2b", 1, v3),
             [f(f"{n}.branch3x3dbl_1"), f(f"{n}.branch3x3dbl_2", 1, 1)],
             f(f"{n}.branch3x3dbl_3a", 1, h3), f(f"{n}.branch3x3dbl_3b", 1, v3),
             f(f"{n}.branch_pool"))
            for n in ("Mixed_7b", "Mixed_7c")
        ]
        self.fc_weight_t = s["fc.weight"].t().contiguous()
        self._to(device)

    def _to(self, device: torch.device) -> None:
        mf = torch.channels_last
        fused = device.type == "cpu" and _fused_available()

        def move(obj):
            if isinstance(obj, _Conv):
                obj.weight = obj.weight.to(device).contiguous(memory_format=mf)
                obj.bias = obj.bias.to(device)
                obj.fused = fused
            elif isinstance(obj, (list, tuple)):
                for o in obj:
                    move(o)

        for attr in ("conv1_rgb", "conv1_gray", "stem", "stem2", "a_blocks", "b_block",
                     "c_blocks", "d_block", "e_blocks"):
            move(getattr(self, attr))
        self.fc_weight_t = self.fc_weight_t.to(device)

    @staticmethod
    def _chain(x: torch.Tensor, convs: list[_Conv]) -> torch.Tensor:
        for c in convs:
            x = c.relu(x)
        return x

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: resized float (N, C, 299, 299) in [0, 255], C in {1, 3}. Returns (pool3, logits_unbiased)."""
        chain = self._chain
        conv1 = self.conv1_gray if x.shape[1] == 1 else self.conv1_rgb
        x = conv1.relu(x.contiguous(memory_format=torch.channels_last))
        x = F.max_pool2d(chain(x, self.stem), 3, 2)
        x = F.max_pool2d(chain(x, self.stem2), 3, 2)

        # A and C blocks average-pool then apply a 1x1 conv; both are linear and the pooling
        # weights sum to one, so convolving first and pooling the (fewer) output channels gives
        # the same result; the ReLU comes last.
        for b1, b5, b3, pool in self.a_blocks:
            x = torch.cat([chain(x, b1), chain(x, b5), chain(x, b3), F.relu_(_avg3(pool(x)))], 1)

        b3, bd = self.b_block
        x = torch.cat([chain(x, b3), chain(x, bd), F.max_pool2d(x, 3, 2)], 1)

        for b1, b7, b7d, pool in self.c_blocks:
            x = torch.cat([chain(x, b1), chain(x, b7), chain(x, b7d), F.relu_(_avg3(pool(x)))], 1)

        b3, b7 = self.d_block
        x = torch.cat([chain(x, b3), chain(x, b7), F.max_pool2d(x, 3, 2)], 1)

        for pool_is_avg, b1, b3_1, b3_2a, b3_2b, bd, bd_3a, bd_3b, pool in self.e_blocks:
            y3 = b3_1.relu(x)
            yd = chain(x, bd)
            if pool_is_avg:
                yp = F.relu_(_avg3(pool(x)))
            else:  # Mixed_7c max-pools (a quirk of the TF graph): max does not commute with conv
                yp = pool.relu(F.max_pool2d(x, 3, 1, 1))
            x = torch.cat([b1.relu(x), b3_2a.relu(y3), b3_2b.relu(y3), bd_3a.relu(yd), bd_3b.relu(yd), yp], 1)

        pool3 = x.mean(dim=(2, 3))
        return pool3, pool3 @ self.fc_weight_t


# ---------------------------------------------------------------------------------------------
# The public extractor, with a content-addressed on-disk cache.


@dataclass
class InceptionFeatures:
    """Per-image features, rows in input order."""

    pool3: np.ndarray  # (N, 2048) float32: torch-fidelity's '2048'
    logits: np.ndarray  # (N, 1008) float32: torch-fidelity's 'logits_unbiased'

    def subset(self, idx: np.ndarray | list[int]) -> InceptionFeatures:
        idx = np.asarray(idx)
        return InceptionFeatures(self.pool3[idx], self.logits[idx])

    def __len__(self) -> int:
        return int(self.pool3.shape[0])


def default_cache_dir() -> Path:
    """``$GENBENCH_CACHE/features`` if set, else ``~/.cache/genbench/features``."""
    root = os.environ.get("GENBENCH_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "genbench"
    return base / "features"


ProgressFn = Callable[[int], None]


class InceptionFeatureExtractor:
    """Inception-v3 features identical to torch-fidelity's, computed faster.

    ``weights``: a weights file, or None for torch-fidelity's cached copy (resolved eagerly, so a
    missing file raises ``WeightsUnavailableError`` here). ``threads``: intra-op CPU threads used
    during extraction (default: torch's current setting).
    """

    def __init__(self, weights: str | os.PathLike[str] | None = None, device: str | torch.device = "cpu",
                 batch_size: int = 32, threads: int | None = None) -> None:
        self.weights_path = resolve_inception_weights(weights)
        self.device = torch.device(device)
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.batch_size = int(batch_size)
        self.threads = threads
        self._net: _FastInception | None = None
        self._resize: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}
        self.n_forward_images = 0  # images pushed through the network (cache hits don't count)

    @property
    def weights_sha256(self) -> str:
        return file_sha256(self.weights_path)

    def _network(self) -> _FastInception:
        if self._net is None:
            self._net = _FastInception(load_inception_state_dict(self.weights_path), self.device)
        return self._net

    def preprocessing(self) -> dict[str, object]:
        """Everything besides pixels and weights that determines the features (the cache key)."""
        return {
            "impl": IMPL_VERSION,
            "quantize": "uint8 = floor((clamp(x,-1,1)+1)*127.5+0.5)",
            "channels": "gray replicated to RGB",
            "resize": f"TF1 bilinear to {INPUT_SIZE}x{INPUT_SIZE}, align_corners=False",
            "normalize": "(x-128)/128",
            "features": ["2048", "logits_unbiased"],
        }

    def _resize_mats(self, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
        key = (h, w)
        if key not in self._resize:
            ry = tf1_resize_matrix(h, INPUT_SIZE).to(self.device)
            rxt = tf1_resize_matrix(w, INPUT_SIZE).t().contiguous().to(self.device)
            self._resize[key] = (ry, rxt)
        return self._resize[key]

    def extract(self, images: torch.Tensor, progress: ProgressFn | None = None) -> InceptionFeatures:
        """Features of canonical (N,1,H,W) float images, or uint8 (N,1|3,H,W) images."""
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"expected (N, 1|3, H, W) images, got {tuple(images.shape)}")
        u8 = to_uint8_gray(images)
        n, c, h, w = u8.shape
        net = self._network()
        ry, rxt = self._resize_mats(h, w)
        pool3 = np.empty((n, 2048), dtype=np.float32)
        logits = np.empty((n, 1008), dtype=np.float32)
        old_threads = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            with torch.inference_mode():
                for start in range(0, n, self.batch_size):
                    batch = u8[start:start + self.batch_size].to(self.device, torch.float32)
                    b = batch.shape[0]
                    # One resize per distinct channel; (ry @ X) @ rx^T done as two batched matmuls.
                    x = (ry @ batch.reshape(b * c, h, w)) @ rxt
                    x = x.reshape(b, c, INPUT_SIZE, INPUT_SIZE)
                    p, lg = net(x)
                    pool3[start:start + b] = p.float().cpu().numpy()
                    logits[start:start + b] = lg.float().cpu().numpy()
                    self.n_forward_images += b
                    if progress is not None:
                        progress(b)
        finally:
            if self.threads:
                torch.set_num_threads(old_threads)
        return InceptionFeatures(pool3, logits)

    def cache_key(self, content_sha256: str) -> str:
        blob = json.dumps({"content": content_sha256, "weights": self.weights_sha256,
                           "pre": self.preprocessing()}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def features(self, images: torch.Tensor, *, cache_dir: str | os.PathLike[str] | None = None,
                 content_sha256: str | None = None, progress: ProgressFn | None = None,
                 use_cache: bool = True, dist: Any = None) -> tuple[InceptionFeatures, bool]:
        """Features with the on-disk cache. Returns (features, cache_hit).

        ``content_sha256`` is the decoded set's ``ImageSet.sha256()`` (computed here if omitted).
        ``dist`` (a ``genbench.distributed.Dist``, every rank calling with the same images): the
        ranks extract whole batches each and every rank gets all rows in input order (the batches
        are those of one process, so the features are too); rank 0 writes the cache.
        """
        if not use_cache:
            return self._extract_shared(images, progress, dist), False
        if content_sha256 is None:
            from genbench.imageset import ImageSet

            content_sha256 = ImageSet(images.float() if images.dtype != torch.uint8 else
                                      images[:, :1].float() / 127.5 - 1.0).sha256()
        folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        path = folder / f"inception-{self.cache_key(content_sha256)}.npz"
        cached = _read_cache(path, len(images))
        if cached is not None if dist is None else dist.all_true(cached is not None):
            if progress is not None:
                progress(len(images))
            return cached, True
        feats = self._extract_shared(images, progress, dist)
        if dist is None or dist.is_main:
            _write_cache(path, feats)
        return feats, False

    def _extract_shared(self, images: torch.Tensor, progress: ProgressFn | None, dist: Any) -> InceptionFeatures:
        """:meth:`extract` divided across the ranks of ``dist`` by whole batches, gathered in order."""
        if dist is None or not dist.enabled:
            return self.extract(images, progress)
        rows = dist.shard(len(images), align=self.batch_size)
        local = self.extract(images[rows.start:rows.stop], dist.progress_scaled(progress, len(images)))
        return InceptionFeatures(dist.gather_rows(local.pool3), dist.gather_rows(local.logits))


def _read_cache(path: Path, n: int) -> InceptionFeatures | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            feats = InceptionFeatures(z["pool3"].astype(np.float32), z["logits"].astype(np.float32))
    except Exception:  # noqa: BLE001 - a corrupt entry is recomputed (and rewritten), never trusted
        return None
    if feats.pool3.shape != (n, 2048) or feats.logits.shape != (n, 1008):
        return None
    return feats


def _write_cache(path: Path, feats: InceptionFeatures) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        np.savez(buf, pool3=feats.pool3, logits=feats.logits, created=np.array(time.time()))
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(buf.getvalue())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError:
        # A read-only or full cache folder must not fail an evaluation; it only costs time later.
        pass
