"""Feature extractors from weight files the user supplies: DINOv2 ViT-B/14 and ViT-L/14, SwAV
ResNet-50, RadImageNet ResNet-50. Never downloaded; each file is checked by SHA-256 and recorded.

``--backbone NAME:PATH`` (or ``NAME:PATH:SHA256``, where SHA256 is the file's full hash or a
prefix of at least 8 hex digits; a mismatch is an error). Architectures come from ``timm``
(DINOv2) and ``torchvision`` (ResNet-50); only the weights come from the file, loaded with
``weights_only=True`` (or safetensors) and strictly: a file for another architecture is refused
with one line naming the file and the mismatch.

Accepted files:

- ``dinov2-vit-b14`` / ``dinov2-vit-l14``: Meta's ``dinov2_vit{b,l}14_pretrain.pth`` (positional
  embeddings for 518 px, ``mask_token``) or timm's ``vit_{base,large}_patch14_dinov2``
  checkpoint (``.safetensors`` or ``.pth``).
- ``swav-r50``: Meta's ``swav_800ep_pretrain.pth.tar`` (``module.``-prefixed, with projection
  head and prototypes, which are ignored) or any torchvision-named ResNet-50 state dict.
- ``radimagenet-r50``: the RadImageNet PyTorch ResNet-50 (``backbone.0...backbone.7``, the
  first nine children of torchvision's ResNet-50, as in RadImageNet's ``pytorch_example``) or
  a torchvision-named state dict.

Preprocessing (each as the backbone was trained or evaluated, except that the whole image is
kept, never centre-cropped):

1. intensity window (``--feature-window``): ``full`` maps the canonical range [-1, 1] to
   [0, 1]; ``LO,HI`` clips to [LO, HI] in the set's source units (HU for the CT presets) and
   maps that to [0, 1]; then 8-bit quantisation, as a PNG of the windowed image would have;
2. grey replicated to three channels;
3. DINOv2: bicubic (antialiased) resize to 224 x 224 and ImageNet mean/std; the 37 x 37
   positional embedding grid is resampled to 16 x 16 exactly as DINOv2's own
   ``interpolate_pos_encoding`` does (bicubic, scale factor (16 + 0.1) / 37, no antialias); the
   feature is the class token after the final norm (768-d / 1024-d).
   SwAV: bilinear resize to 224 x 224 and ImageNet mean/std; 2048-d average-pooled ``layer4``.
   RadImageNet: bilinear resize to 224 x 224 and ``(x - 127.5) * 2 / 255`` (its PyTorch
   example; no ImageNet statistics); 2048-d average-pooled ``layer4``.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from genbench.errors import InputError, UsageError, WeightsUnavailableError, parse_range

if TYPE_CHECKING:  # torch, timm and torchvision are imported where used: the registry reads
    import torch  # this module's catalogue (names, titles) without loading them
    from torch import nn

__all__ = [
    "BACKBONES",
    "BackboneRequest",
    "BackboneSpec",
    "FeatureExtractor",
    "FeatureWindow",
    "load_backbone",
    "parse_backbone",
    "parse_feature_window",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INPUT_SIZE = 224
IMPL_VERSION = "genbench-backbones-1"


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    family: str  # "dinov2" | "resnet50"
    dim: int
    timm_arch: str | None
    description: str
    preprocessing: str
    short: str = ""  # table header label


BACKBONES: dict[str, BackboneSpec] = {
    "dinov2-vit-b14": BackboneSpec(
        "dinov2-vit-b14", "dinov2", 768, "vit_base_patch14_dinov2",
        "DINOv2 ViT-B/14 (Oquab et al. 2023; Stein et al. 2023 recommend it over Inception)",
        "bicubic antialiased resize to 224x224, ImageNet mean/std; class token after final norm",
        "DINOv2-B"),
    "dinov2-vit-l14": BackboneSpec(
        "dinov2-vit-l14", "dinov2", 1024, "vit_large_patch14_dinov2",
        "DINOv2 ViT-L/14 (dgm-eval's default)",
        "bicubic antialiased resize to 224x224, ImageNet mean/std; class token after final norm",
        "DINOv2-L"),
    "swav-r50": BackboneSpec(
        "swav-r50", "resnet50", 2048, None,
        "SwAV ResNet-50, ImageNet self-supervised (Caron et al. 2020; Woodland et al. 2024)",
        "bilinear resize to 224x224, ImageNet mean/std; 2048-d average-pooled layer4", "SwAV"),
    "radimagenet-r50": BackboneSpec(
        "radimagenet-r50", "resnet50", 2048, None,
        "RadImageNet ResNet-50, supervised on 1.35 M radiology images (Mei et al. 2022)",
        "bilinear resize to 224x224, (x-127.5)*2/255 as RadImageNet's PyTorch example; "
        "2048-d average-pooled layer4", "RadImageNet"),
}


# ---------------------------------------------------------------------------------------------
# Options.


@dataclass(frozen=True)
class BackboneRequest:
    name: str
    path: Path
    sha256: str | None = None  # expected hash (full or prefix), lower-case hex

    def label(self) -> str:
        return self.name


def parse_backbone(text: str) -> BackboneRequest:
    """'NAME:PATH' or 'NAME:PATH:SHA256' -> BackboneRequest (UsageError naming the option)."""
    raw = str(text).strip()
    name, sep, rest = raw.partition(":")
    name = name.strip().lower()
    if not sep or not rest:
        raise UsageError(f"--backbone expects NAME:PATH (NAME one of {', '.join(BACKBONES)}), got {text!r}")
    if name not in BACKBONES:
        raise UsageError(f"--backbone: unknown backbone {name!r}; known: {', '.join(BACKBONES)}")
    sha = None
    m = re.fullmatch(r"(.+):([0-9a-fA-F]{8,64})", rest)
    if m and not Path(rest).exists():
        rest, sha = m.group(1), m.group(2).lower()
    return BackboneRequest(name, Path(rest).expanduser(), sha)


def parse_backbones(value: str | tuple[str, ...] | list[str] | None) -> tuple[str, ...]:
    """``--backbone`` value(s) -> normalised 'name:path[:sha]' strings, one per backbone.

    Several may be given comma-separated (a comma starts a new entry only before a known
    backbone name, so paths with commas survive). A backbone named twice is an error.
    """
    if value is None or value == "" or value == ():
        return ()
    items = [value] if isinstance(value, str) else list(value)
    names = "|".join(re.escape(n) for n in BACKBONES)
    parts: list[str] = []
    for item in items:
        parts += [p.strip() for p in re.split(rf",(?=\s*(?:{names}):)", str(item), flags=re.IGNORECASE)
                  if p.strip()]
    out, seen = [], set()
    for p in parts:
        req = parse_backbone(p)
        if req.name in seen:
            raise UsageError(f"--backbone: {req.name} given twice")
        seen.add(req.name)
        out.append(f"{req.name}:{req.path}" + (f":{req.sha256}" if req.sha256 else ""))
    return tuple(out)


def backbone_requests(value: tuple[str, ...]) -> dict[str, BackboneRequest]:
    return {r.name: r for r in (parse_backbone(v) for v in parse_backbones(value))}


@dataclass(frozen=True)
class FeatureWindow:
    """How canonical images become the [0, 1] grey levels a backbone sees."""

    lo: float | None = None  # None: the full canonical range
    hi: float | None = None

    @property
    def is_full(self) -> bool:
        return self.lo is None

    def label(self) -> str:
        return "full" if self.is_full else f"{self.lo:g},{self.hi:g}"

    def apply(self, images: torch.Tensor, mapping: Any = None) -> torch.Tensor:
        """Canonical (N, 1, H, W) -> uint8 (N, 1, H, W) after windowing (8-bit, as a PNG would be)."""
        from genbench.imageset import quantize_uint8

        x = images.float()
        if self.is_full:
            return quantize_uint8(x)
        scale = float(getattr(mapping, "scale", 1.0))
        offset = float(getattr(mapping, "offset", 0.0))
        raw = x * scale + offset
        unit01 = ((raw - self.lo) / (self.hi - self.lo)).clamp(0.0, 1.0)
        return quantize_uint8(unit01 * 2.0 - 1.0)

    def describe(self, mapping: Any = None) -> str:
        if self.is_full:
            return "full canonical range [-1, 1] -> [0, 255]"
        unit = getattr(mapping, "unit", "canonical")
        return f"clip to [{self.lo:g}, {self.hi:g}] {unit} -> [0, 255]"


def parse_feature_window(text: str | FeatureWindow | None) -> FeatureWindow:
    if isinstance(text, FeatureWindow):
        return text
    if text is None or str(text).strip().lower() == "full":
        return FeatureWindow()
    lo, hi = parse_range(text, "--feature-window", also="'full' or ")
    return FeatureWindow(lo, hi)


# ---------------------------------------------------------------------------------------------
# Loading weights.


def _first_line(exc: BaseException, limit: int = 200) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:limit]


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    import torch
    
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for corrupt / pickled-object files
        raise InputError(f"cannot load backbone weights as a plain state dict ({type(exc).__name__}: "
                         f"{_first_line(exc)})", str(path)) from None
    for key in ("state_dict", "model", "teacher"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError("backbone weights file does not hold a state dict of tensors", str(path))
    return dict(state)


def _strip(state: dict[str, torch.Tensor], prefixes: tuple[str, ...]) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in state.items():
        for p in prefixes:
            k = k.removeprefix(p)
        out[k] = v
    return out


# torchvision ResNet-50's children in order (RadImageNet saves nn.Sequential(*children[:9])).
_RESNET_CHILDREN = {0: "conv1", 1: "bn1", 4: "layer1", 5: "layer2", 6: "layer3", 7: "layer4"}


def _resnet_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    state = _strip(state, ("module.", "backbone.", "encoder."))
    out = {}
    for k, v in state.items():
        head, _, tail = k.partition(".")
        if head.isdigit() and int(head) in _RESNET_CHILDREN:
            k = f"{_RESNET_CHILDREN[int(head)]}.{tail}"
        if k.startswith(("fc.", "projection_head.", "prototypes.")):
            continue  # classifier / SwAV heads: not part of the feature extractor
        out[k] = v
    return out


def resample_dinov2_pos_embed(pos_embed: torch.Tensor, grid: int, offset: float = 0.1) -> torch.Tensor:
    """(1, 1 + M*M, D) -> (1, 1 + grid*grid, D) exactly as DINOv2's ``interpolate_pos_encoding``
    (bicubic, ``scale_factor = (grid + offset) / M``, no antialias), computed in float32."""
    import torch
    import torch.nn.functional as F
    
    n = pos_embed.shape[1] - 1
    m = math.isqrt(n)
    if m * m != n:
        raise ValueError(f"positional embedding of {n} patches is not a square grid")
    if m == grid:
        return pos_embed
    cls, patch = pos_embed[:, :1].float(), pos_embed[:, 1:].float()
    dim = patch.shape[-1]
    s = (grid + offset) / m
    patch = F.interpolate(patch.reshape(1, m, m, dim).permute(0, 3, 1, 2), scale_factor=(s, s),
                          mode="bicubic", antialias=False)
    if patch.shape[-2:] != (grid, grid):
        raise ValueError(f"resampled grid {tuple(patch.shape[-2:])} != ({grid}, {grid})")
    patch = patch.permute(0, 2, 3, 1).reshape(1, grid * grid, dim)
    return torch.cat([cls, patch], dim=1).to(pos_embed.dtype)


def _dinov2_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    state = _strip(state, ("module.", "backbone.", "encoder."))
    state.pop("mask_token", None)
    if "register_tokens" in state:
        raise ValueError("a DINOv2 checkpoint with register tokens (use the plain ViT-B/14 or ViT-L/14)")
    if "pos_embed" in state:
        state["pos_embed"] = resample_dinov2_pos_embed(state["pos_embed"], INPUT_SIZE // 14)
    return state


def build_architecture(spec: BackboneSpec, device: str | torch.device | None = None) -> nn.Module:
    """The bare architecture, never downloaded. ``device="meta"`` builds it without allocating or
    initialising anything (the weights are then assigned from a file)."""
    import torch
    from torch import nn
    
    with torch.device(device or "cpu"):
        if spec.family == "dinov2":
            import timm

            return timm.create_model(spec.timm_arch, pretrained=False, img_size=INPUT_SIZE, num_classes=0)
        from torchvision.models import resnet50

        net = resnet50(weights=None)
        net.fc = nn.Identity()
        return net


def _load_into(net: nn.Module, state: dict[str, torch.Tensor], spec: BackboneSpec, path: Path) -> None:
    try:
        # assign=True: the file's tensors become the parameters of the meta-built module.
        net.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        want = net.state_dict()
        missing = [k for k in want if k not in state]
        extra = [k for k in state if k not in want]
        shape = [k for k in want if k in state and tuple(state[k].shape) != tuple(want[k].shape)]
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if extra:
            parts.append(f"{len(extra)} unexpected (e.g. {extra[0]})")
        if shape:
            k = shape[0]
            parts.append(f"{len(shape)} of another shape (e.g. {k}: {tuple(state[k].shape)} vs "
                         f"{tuple(want[k].shape)})")
        detail = "; ".join(parts) or _first_line(exc)
        raise InputError(f"not {spec.name} weights ({spec.description.split(' (')[0]}): {detail}",
                         str(path)) from None


_CHECKED: dict[tuple[str, int, int, str | None, str], str] = {}


def _verified_state(request: BackboneRequest, spec: BackboneSpec) -> tuple[str, dict[str, torch.Tensor]]:
    """The file's SHA-256 (checked against a pinned one) and its state dict in the architecture's
    names; one-line InputError naming the file when either is wrong."""
    from genbench.io.hashing import file_sha256

    path = request.path
    sha = file_sha256(path)
    if request.sha256 is not None and not sha.startswith(request.sha256):
        raise InputError(f"SHA-256 mismatch for {spec.name}: the file has {sha}, expected "
                         f"{request.sha256}{'' if len(request.sha256) == 64 else '...'}", str(path))
    state = _read_state(path)
    try:
        state = _dinov2_state(state) if spec.family == "dinov2" else _resnet_state(state)
    except ValueError as exc:
        raise InputError(f"not {spec.name} weights: {exc}", str(path)) from None
    return sha, state


def check_backbone_file(request: BackboneRequest) -> str | None:
    """Fail fast on a file the user named that cannot be this backbone: SHA-256 mismatch, not a
    state dict, another architecture (one-line InputError naming the file). Returns the file's
    SHA-256, or None when the file is absent (then the metrics say so and the others go on).
    Memoised per file (path, size, mtime): options are validated more than once per run."""
    path = request.path
    if not path.is_file():
        return None
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, request.sha256, request.name)
    if key not in _CHECKED:
        spec = BACKBONES[request.name]
        sha, state = _verified_state(request, spec)
        meta = build_architecture(spec, "meta")
        want = meta.state_dict()
        if set(want) != set(state) or any(tuple(state[k].shape) != tuple(want[k].shape) for k in want):
            _load_into(meta, state, spec, path)  # raises the one-line mismatch
        _CHECKED[key] = sha
    return _CHECKED[key]


def load_backbone(request: BackboneRequest, device: str | torch.device = "cpu") -> FeatureExtractor:
    """Check the file (exists, SHA-256 if pinned), build the architecture, load the weights strictly."""
    import torch

    spec = BACKBONES[request.name]
    path = request.path
    if not path.is_file():
        raise WeightsUnavailableError(
            f"{spec.name} weights not found: {path} is not a file. genbench never downloads weights: "
            f"pass --backbone {spec.name}:PATH with a local copy of the published file")
    sha, state = _verified_state(request, spec)
    net = build_architecture(spec, "meta")
    _load_into(net, state, spec, path)
    left = [n for n, t in [*net.named_parameters(), *net.named_buffers()] if t.is_meta]
    if left:  # a tensor the state dict does not carry (none for these architectures)
        raise InputError(f"not {spec.name} weights: no value for {left[0]}", str(path))
    return FeatureExtractor(spec, net.eval(), sha, path, torch.device(device))


# ---------------------------------------------------------------------------------------------
# Extraction.


ProgressFn = Callable[[int], None]


def preprocess(u8: torch.Tensor, spec: BackboneSpec) -> torch.Tensor:
    """uint8 (B, 1, H, W) -> the backbone's float input (B, 3, 224, 224)."""
    import torch
    import torch.nn.functional as F
    
    x = u8.float()
    if spec.name == "radimagenet-r50":
        x = (x - 127.5) * 2.0 / 255.0
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        return x.expand(-1, 3, -1, -1)
    x = x / 255.0
    if spec.family == "dinov2":
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bicubic", align_corners=False,
                          antialias=True)
    else:
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False,
                          antialias=True)
    x = x.expand(-1, 3, -1, -1)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


class FeatureExtractor:
    """A loaded backbone: ``features(images)`` with an on-disk cache keyed like Inception's."""

    def __init__(self, spec: BackboneSpec, net: nn.Module, sha256: str, path: Path,
                 device: torch.device, batch_size: int = 32) -> None:
        self.spec, self.sha256, self.path, self.device = spec, sha256, path, device
        self.net = net.to(device)
        self.batch_size = batch_size
        self.n_forward_images = 0

    def params(self, window: FeatureWindow, mapping: Any = None) -> dict[str, Any]:
        return {"backbone": self.spec.name, "weights_sha256": self.sha256, "weights_file": self.path.name,
                "feature_dim": self.spec.dim, "preprocessing": self.spec.preprocessing,
                "feature_window": window.label(), "intensity_mapping": window.describe(mapping)}

    def extract(self, u8: torch.Tensor, progress: ProgressFn | None = None) -> np.ndarray:
        """uint8 (N, 1, H, W) (already windowed) -> float32 (N, dim)."""
        import torch

        out = np.empty((len(u8), self.spec.dim), dtype=np.float32)
        with torch.inference_mode():
            for s in range(0, len(u8), self.batch_size):
                b = u8[s:s + self.batch_size].to(self.device)
                f = self.net(preprocess(b, self.spec))
                out[s:s + len(b)] = f.float().reshape(len(b), -1).cpu().numpy()
                self.n_forward_images += len(b)
                if progress is not None:
                    progress(len(b))
        return out

    def features(self, images: torch.Tensor, *, window: FeatureWindow, mapping: Any = None,
                 cache_dir: str | os.PathLike[str] | None = None, use_cache: bool = True,
                 progress: ProgressFn | None = None, dist: Any = None) -> tuple[np.ndarray, bool]:
        """Features of canonical (N, 1, H, W) images. Returns (features, cache_hit).

        ``dist`` (a ``genbench.distributed.Dist``): as Inception's, whole batches per rank,
        all rows on every rank in input order, rank 0 writes the cache."""
        u8 = window.apply(images, mapping)
        if not use_cache:
            return self._extract_shared(u8, progress, dist), False
        h = hashlib.sha256(repr(tuple(u8.shape)).encode())
        h.update(u8.cpu().numpy().tobytes())
        key = hashlib.sha256(json.dumps({"pixels": h.hexdigest(), "weights": self.sha256,
                                         "backbone": self.spec.name, "impl": IMPL_VERSION,
                                         "pre": self.spec.preprocessing}, sort_keys=True).encode()).hexdigest()
        from genbench.metrics.inception import default_cache_dir

        folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        path = folder / f"{self.spec.name}-{key}.npy"
        arr = None
        if path.is_file():
            try:
                arr = np.load(path, allow_pickle=False)
                arr = arr if arr.shape == (len(u8), self.spec.dim) else None
            except Exception:  # noqa: BLE001 - a corrupt entry is recomputed
                arr = None
        if arr is not None if dist is None else dist.all_true(arr is not None):
            if progress is not None:
                progress(len(u8))
            return arr.astype(np.float32, copy=False), True
        feats = self._extract_shared(u8, progress, dist)
        if dist is not None and not dist.is_main:
            return feats, False
        try:
            from genbench.io.atomic import atomic_write_bytes

            buf = io.BytesIO()
            np.save(buf, feats)
            atomic_write_bytes(path, buf.getvalue())
        except OSError:
            pass
        return feats, False

    def _extract_shared(self, u8: torch.Tensor, progress: ProgressFn | None, dist: Any) -> np.ndarray:
        """:meth:`extract` divided across the ranks of ``dist`` by whole batches, gathered in order."""
        if dist is None or not dist.enabled:
            return self.extract(u8, progress)
        rows = dist.shard(len(u8), align=self.batch_size)
        return dist.gather_rows(self.extract(u8[rows.start:rows.stop], dist.progress_scaled(progress, len(u8))))


def random_state_dict(name: str, seed: int = 0, *, official_format: bool = True) -> dict[str, torch.Tensor]:
    """A randomly initialised state dict in the published file's layout, for tests and benchmarks.

    DINOv2: Meta's layout (518 px positional grid, ``mask_token``). SwAV: ``module.`` prefix plus
    a projection head. RadImageNet: ``backbone.<i>`` Sequential names. Shapes come from the
    architecture built on the meta device (no memory, no slow init); convolutions get
    Kaiming-normal weights so that features neither vanish nor explode with depth.
    """
    import torch
    
    spec = BACKBONES[name]
    gen = torch.Generator().manual_seed(seed)
    with torch.device("meta"):
        if spec.family == "dinov2":
            import timm

            meta = timm.create_model(spec.timm_arch, pretrained=False, num_classes=0)  # 518 px grid
        else:
            from torchvision.models import resnet50

            meta = resnet50(weights=None)
    state: dict[str, torch.Tensor] = {}
    for k, v in meta.state_dict().items():
        shape = tuple(v.shape)
        if v.dtype not in (torch.float32, torch.float64):
            state[k] = torch.zeros(shape, dtype=v.dtype)
        elif k.endswith("running_mean") or (k.endswith(".bias") and "bn" not in k and "downsample.1" not in k):
            state[k] = 0.1 * torch.randn(shape, generator=gen)
        elif k.endswith("running_var"):
            state[k] = 0.5 + torch.rand(shape, generator=gen)
        elif len(shape) == 4:  # convolutions, the patch embedding
            fan_in = shape[1] * shape[2] * shape[3]
            state[k] = torch.randn(shape, generator=gen) * math.sqrt(2.0 / fan_in)
        elif len(shape) == 2 and k not in ("cls_token",):  # linear layers
            state[k] = torch.randn(shape, generator=gen) * math.sqrt(1.0 / shape[1])
        elif k.endswith("gamma"):  # DINOv2 layer scale
            state[k] = torch.full(shape, 0.5)
        elif k.endswith(".weight"):  # norms
            state[k] = 0.5 + 0.5 * torch.rand(shape, generator=gen)
        else:  # norm biases, cls token, positional embedding
            state[k] = 0.5 * torch.randn(shape, generator=gen)
    if spec.family == "dinov2":
        if official_format:
            state["mask_token"] = torch.zeros(1, spec.dim)
        return state
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    if not official_format:
        return state
    if name == "swav-r50":
        state = {f"module.{k}": v for k, v in state.items()}
        state["module.projection_head.0.weight"] = 0.01 * torch.randn(2048, 2048, generator=gen)
        state["module.prototypes.weight"] = 0.01 * torch.randn(3000, 128, generator=gen)
        return state
    inverse = {v: k for k, v in _RESNET_CHILDREN.items()}
    out = {}
    for k, v in state.items():
        head, _, tail = k.partition(".")
        out[f"backbone.{inverse[head]}.{tail}"] = v
    return out


# ---------------------------------------------------------------------------------------------
# Metrics on any backbone's features, and their registry entries.

# metric -> (table title, direction, digits, description); one registry entry per backbone each.
BACKBONE_METRIC_INFO: dict[str, tuple[str, int, int, str]] = {
    "fd": ("FD", -1, 3, "Fréchet distance between Gaussians fitted to {b} features (float64, as FID)."),
    "kid": ("KID", -1, 4, "Kernel distance (unbiased cubic-kernel MMD², as KID) on {b} features."),
    "precision": ("Prec.", +1, 3, "Share of synthetic images inside a real k-NN ball (k=5, prdc's "
                                  "definition) on {b} features: fidelity."),
    "recall": ("Rec.", +1, 3, "Share of real images inside a synthetic k-NN ball (k=5) on {b} features."),
    "density": ("Dens.", +1, 3, "Real k-NN balls containing each synthetic image / k (Naeem et al. 2020) "
                                "on {b} features: fidelity robust to real outliers (1 ~ real)."),
    "coverage": ("Cov.", +1, 3, "Share of real images whose k-NN ball holds a synthetic image (Naeem et "
                                "al. 2020) on {b} features: diversity robust to synthetic outliers."),
}
BACKBONE_METRICS: tuple[str, ...] = tuple(BACKBONE_METRIC_INFO)


def metric_name(metric: str, backbone: str) -> str:
    """'fd', 'dinov2-vit-b14' -> 'fd_dinov2-vit-b14' (the name in JSON and ``--metrics``)."""
    return f"{metric}_{backbone}"


def backbone_metric_names(backbones: tuple[str, ...]) -> tuple[str, ...]:
    """The registered metrics a ``--backbone`` value adds to the selection."""
    return tuple(metric_name(m, r.name) for r in backbone_requests(backbones).values() for m in BACKBONE_METRICS)


def backbone_metrics(real: np.ndarray, synth: np.ndarray, *, metrics: tuple[str, ...] = BACKBONE_METRICS,
                     seed: int | None = None, kid_subset_size: int | None = None, k: int = 5,
                     common: dict[str, Any] | None = None, boot: Any = None) -> dict[str, Any]:
    """Fréchet distance, KID and precision/recall/density/coverage between feature matrices.

    Returns {metric: MetricResult} keyed by the bare metric name ('fd', 'kid', ...). FD and KID
    are the formulas genbench uses for Inception (float64 Fréchet distance; unbiased cubic-kernel
    MMD² with gamma = 1/d, subsets drawn as torch-fidelity draws them, its seed 2020 unless
    ``seed``); P/R/D/C are the ``prdc`` package's definitions with k = ``k``. ``boot`` (a
    ``genbench.stats.Bootstrap``) adds confidence intervals: FD and KID from resampled images of
    both sets; P/R/D/C from each image's term with the other set's k-NN balls held fixed.
    """
    from genbench.errors import GenbenchError
    from genbench.metrics import fidelity
    from genbench.metrics.prdc import mean_replicates, prdc_terms
    from genbench.metrics.result import MetricResult
    from genbench.stats import REAL, SYNTH, attach_ci

    common = dict(common or {})
    nr, ns = len(real), len(synth)
    use_boot = boot is not None and boot.enabled
    seed = fidelity.TF_SEED if seed is None else int(seed)
    out: dict[str, Any] = {}

    def make(m: str, value: float, std: float | None, params: dict[str, Any]) -> MetricResult:
        return MetricResult(name=m, value=float(value), std=std, params={**common, **params},
                            n_real=nr, n_synth=ns)

    def guard(m: str, fn: Callable[[], MetricResult]) -> MetricResult:
        try:
            return fn()
        except GenbenchError as exc:
            return MetricResult.unavailable(m, str(exc), **common)

    if "fd" in metrics:
        def _fd() -> MetricResult:
            res = make("fd", fidelity.frechet_distance(real, synth), None,
                       {"formula": "|mu_r-mu_s|^2 + Tr(S_r+S_s-2(S_r S_s)^1/2), float64"})
            if use_boot:
                attach_ci(res, fidelity.fid_replicates(real, synth, boot), boot, bounds=(0.0, None))
            return res
        out["fd"] = guard("fd", _fd)
    if "kid" in metrics:
        def _kid() -> MetricResult:
            size = kid_subset_size if kid_subset_size is not None else min(nr, ns, fidelity.KID_SUBSET_SIZE)
            mean, std = fidelity.kernel_inception_distance(synth, real, subsets=fidelity.KID_SUBSETS,
                                                           subset_size=size, seed=seed)
            res = make("kid", mean, std, {"subset_size": size, "subsets": fidelity.KID_SUBSETS, "kernel": "poly",
                                          "degree": 3, "gamma": f"1/{real.shape[1]}", "coef0": 1.0,
                                          "estimator": "unbiased", "seed": seed})
            if use_boot:
                attach_ci(res, fidelity.kid_replicates(synth, real, boot), boot, params={
                    "ci_statistic": "unbiased MMD^2 over all images of each bootstrap resample"})
            return res
        out["kid"] = guard("kid", _kid)
    wanted = [m for m in ("precision", "recall", "density", "coverage") if m in metrics]
    if wanted:
        try:
            terms = prdc_terms(real, synth, k=k)
            summary = terms.summary().as_dict()
            per_image = {"precision": (terms.in_real_balls > 0, SYNTH, (0.0, 1.0)),
                         "density": (terms.in_real_balls / k, SYNTH, (0.0, None)),
                         "recall": (terms.recalled, REAL, (0.0, 1.0)),
                         "coverage": (terms.covered, REAL, (0.0, 1.0))}
            for m in wanted:
                out[m] = make(m, summary[m], None, {"nearest_k": k, "definition": "prdc (Naeem et al. 2020)"})
                if use_boot:
                    vals, stream, bounds = per_image[m]
                    attach_ci(out[m], mean_replicates(vals, boot, stream), boot, bounds=bounds, params={
                        "ci_conditional_on": "the other set's k-NN balls (per-image terms resampled)"})
        except GenbenchError as exc:
            for m in wanted:
                out[m] = MetricResult.unavailable(m, str(exc), **common)
    return out


def _check_units(real: Any, synth: Any, window: FeatureWindow) -> None:
    if window.is_full:
        return
    a, b = real.mapping, synth.mapping
    if (a.unit, a.scale, a.offset) != (b.unit, b.scale, b.offset):
        raise UsageError(f"--feature-window {window.label()}: the real set is in {a.unit} "
                         f"(scale {a.scale:g}, offset {a.offset:g}) and the synthetic set in {b.unit} "
                         f"(scale {b.scale:g}, offset {b.offset:g}); one window cannot mean the same "
                         "intensities in both (use --feature-window full)")


def compute_backbone_metric(ctx: Any, metric: str, name: str) -> Any:
    """Registry entry for ``<metric>_<name>``: the six metrics of one backbone are computed together,
    once per pair of sets; features are per image, cached on disk and shared with the floor."""

    def all_six() -> dict[str, Any]:
        reqs = backbone_requests(ctx.options.backbones)
        if name not in reqs:
            raise WeightsUnavailableError(
                f"no {name} weights given: pass --backbone {name}:PATH with a local copy of the "
                "published file (genbench never downloads weights)")
        req = reqs[name]
        key = ("backbone-extractor", name, str(req.path), req.sha256, str(ctx.device))
        if key not in ctx.shared:
            ctx.shared[key] = load_backbone(req, device=ctx.device)
            ctx.shared[key].batch_size = ctx.options.batch_size
        ext = ctx.shared[key]
        window = parse_feature_window(ctx.options.feature_window)
        _check_units(ctx.real, ctx.synth, window)

        def features(which: str) -> np.ndarray:
            def compute(images: Any) -> np.ndarray:
                with ctx.step(f"{BACKBONES[name].short} features ({which})", len(images)) as step:
                    f, _hit = ext.features(images.images, window=window, mapping=images.mapping,
                                           cache_dir=ctx.options.cache_dir, use_cache=ctx.options.use_cache,
                                           progress=step, dist=ctx.dist)
                return f
            return ctx.per_image(("backbone", name, ext.sha256, window.label()), which, compute)

        fr, fs = features("real"), features("synth")
        with ctx.step(f"{BACKBONES[name].short}: FD/KID/PRDC", 1):
            return backbone_metrics(fr, fs, kid_subset_size=ctx.options.kid_subset_size,
                                    common=ext.params(window, ctx.real.mapping), boot=ctx.boot)

    return ctx.once(("backbone-metrics", name), all_six)[metric]


def _registry_function(metric: str, name: str) -> Callable[[Any], Any]:
    def compute(ctx: Any) -> Any:
        return compute_backbone_metric(ctx, metric, name)

    compute.__name__ = compute.__qualname__ = registry_function_name(metric, name)
    compute.__doc__ = f"Registry entry: {metric} on {name} features."
    return compute


def registry_function_name(metric: str, name: str) -> str:
    return f"compute_{metric}_{name.replace('-', '_')}"


# One module attribute per registry entry ("genbench.metrics.backbones:compute_fd_swav_r50").
for _name in BACKBONES:
    for _metric in BACKBONE_METRICS:
        globals()[registry_function_name(_metric, _name)] = _registry_function(_metric, _name)
del _name, _metric
