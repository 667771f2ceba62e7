"""Machine Turing test: a classifier two-sample test (C2ST; Lopez-Paz & Oquab, ICLR 2017).

A small CNN, trained from scratch (no pretrained weights: it runs offline on every machine),
learns to tell real from synthetic images; its accuracy on images it did not train on is the
metric. 0.5 = the classifier cannot tell the sets apart; 1.0 = it always can.

Procedure (every step seeded; the same inputs, options and seed give the same numbers on one
machine and device):

1. Size matching: ``m = min(n_real, n_synth)``; the larger set is subsampled to ``m`` images
   without replacement. Balanced classes make 0.5 the chance level.
2. Balanced k-fold: each class is shuffled and cut into ``k`` near-equal parts; fold ``j``
   holds part ``j`` of both classes, so every fold is balanced too. When the images name
   their patients (``<patient>:s<slice>``, as prepared data sets and phantoms do), a patient's
   slices stay in one fold: otherwise the network recognises held-out patients from their
   other slices in training, which is not what the test asks (see ``c2st_images``).
3. For each fold a fresh network is trained on the other ``k - 1`` folds (Adam, binary
   cross-entropy, ``epochs`` passes, mini-batches of ``batch_size``) and predicts
   P(synthetic) for the held-out fold. No augmentation: flips or crops could hide the very
   defects (asymmetry, border artefacts) a reader would notice.
4. Every image is predicted exactly once, by a network that never saw it. Positive =
   synthetic, call = P > 0.5: accuracy, sensitivity (synthetic called synthetic) and
   specificity (real called real) with exact binomial (Clopper-Pearson) intervals over the
   ``2m`` held-out calls, as for human readers (``genbench.turing.stats``); the AUC of the
   probabilities with DeLong's interval. With patient folds the calls on one patient's slices
   are correlated: the intervals then use the effective sample size (Korn-Graubard,
   ``clustered_proportion``) and the test against 0.5 the same design effect. Even so they
   are optimistic with few patients (12 + 12 patients of 10 slices, 16 px, 20 draws: the
   accuracy's SD was 0.15 and 14 of 20 intervals held 0.5, against 6 of 20 unadjusted): read
   the value against the real-vs-real floor at the same size.
5. p-value by permutation: the whole cross-validation is repeated ``permutations`` times on
   labels shuffled at random (still m and m), and ``p = (1 + #{acc_perm >= acc}) /
   (1 + permutations)``, exact for any classifier when the images are independent (with
   patient folds it permutes images, so it is approximate). The exact binomial test of the accuracy
   against 0.5 is reported too; it treats the ``2m`` held-out calls as independent, which the
   folds' shared training data makes only approximately true.

Network: a 3x3 convolution at full resolution, then stride-2 3x3 convolutions with batch
normalisation and leaky ReLU until the feature map is at most 8 x 8, channels doubling from
``width`` up to 4 * ``width``; global average and global max pooling, one linear output (about
60 k parameters at 64 px and the default width 16, 134 k at 256 px; any square size). Batch
normalisation makes training far more sample-efficient: noise of sigma 0.05 on 32 px pelvic
phantoms, 120 images per class, learning rate 2e-3: accuracy 0.99 after 12 epochs with it,
0.63 without normalisation, 0.69 after 20 epochs with group normalisation (which removes each
image's own contrast, the very signal of added noise). Its statistics for prediction are
recomputed exactly over the training images with the final weights: a running average that
lags behind the weights put every probability on one side of 0.5 after few steps.

Cost: ``folds * (1 + permutations)`` trainings of ``epochs`` passes over ``(k-1)/k * 2m``
images. The permutation p-value is therefore off by default (``permutations = 0``): ask for
it (e.g. 99) when a p-value is to be published.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from genbench.errors import InputError, UsageError
from genbench.metrics.result import MetricResult

__all__ = ["C2STConfig", "C2STNet", "C2STResult", "balanced_folds", "c2st", "c2st_images",
           "compute_c2st", "patient_groups"]

METHOD = "c2st-cnn/1"
_PATIENT = re.compile(r"(.+):s\d+")
CI_METHOD = "exact binomial (Clopper-Pearson) over the held-out calls"


@dataclass(frozen=True)
class C2STConfig:
    """Options of the machine Turing test (all of them change the result)."""

    folds: int = 5
    epochs: int = 12
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    width: int = 16
    permutations: int = 0
    level: float = 0.95

    def __post_init__(self) -> None:
        if self.folds < 2:
            raise UsageError(f"c2st: folds must be at least 2, got {self.folds}")
        if self.epochs < 1 or self.batch_size < 2 or self.width < 1:
            raise UsageError("c2st: epochs >= 1, batch_size >= 2 and width >= 1 are required")
        if self.permutations < 0:
            raise UsageError(f"c2st: permutations must be >= 0, got {self.permutations}")
        if not 0.5 <= self.level < 1:
            raise UsageError(f"c2st: level must be in [0.5, 1), got {self.level}")


@dataclass
class C2STResult:
    accuracy: Any  # genbench.turing.stats.Proportion
    sensitivity: Any
    specificity: Any
    auc: tuple[float, tuple[float, float], float]
    p_binomial: float
    p_permutation: float | None
    permutation_accuracies: list[float]
    fold_accuracies: list[float]
    n_per_class: int
    n_real: int
    n_synth: int
    config: C2STConfig
    grouped: bool
    elapsed_s: float
    probabilities: np.ndarray = field(repr=False)  # P(synthetic), real rows first
    labels: np.ndarray = field(repr=False)

    def summary(self) -> dict[str, Any]:
        fin = lambda x: None if x is None or not math.isfinite(x) else float(x)
        return {
            "accuracy": self.accuracy.to_json(),
            "sensitivity": self.sensitivity.to_json(),
            "specificity": self.specificity.to_json(),
            "auc": {"value": fin(self.auc[0]), "ci": [fin(self.auc[1][0]), fin(self.auc[1][1])],
                    "se": fin(self.auc[2])},
            "p_permutation": fin(self.p_permutation),
            "p_binomial": fin(self.p_binomial),
            "permutation_accuracies": [float(a) for a in self.permutation_accuracies],
            "fold_accuracies": [float(a) for a in self.fold_accuracies],
            "n_per_class": self.n_per_class,
            "folds_by_patient": self.grouped,
        }


class C2STNet(nn.Module):
    """The small from-scratch classifier (see the module docstring); outputs a logit."""

    def __init__(self, size: int, width: int = 16) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(1, width, 3, padding=1), nn.LeakyReLU(0.2)]
        c, s = width, size
        while s > 8:
            c2 = min(2 * c, 4 * width)
            layers += [nn.Conv2d(c, c2, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c2, momentum=None),
                       nn.LeakyReLU(0.2)]
            c, s = c2, (s + 1) // 2
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(2 * c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        return self.head(torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)).squeeze(1)


def _class_folds(n: int, k: int, rng: np.random.Generator, groups: np.ndarray | None) -> np.ndarray:
    """Fold of each of ``n`` images of one class. Without groups: shuffled and cut into k
    near-equal parts. With groups (patients): whole groups, shuffled, then placed largest first
    into the fold holding the fewest images so far, so no group is split across folds."""
    if groups is None:
        fold = np.empty(n, dtype=np.int64)
        for j, part in enumerate(np.array_split(rng.permutation(n), k)):
            fold[part] = j
        return fold
    names, inverse, sizes = np.unique(groups, return_inverse=True, return_counts=True)
    if len(names) < k:
        raise InputError(f"c2st needs at least {k} patients per set for {k} folds (slices of "
                         f"one patient stay in one fold), got {len(names)}")
    order = rng.permutation(len(names))
    order = order[np.argsort(-sizes[order], kind="stable")]
    load = np.zeros(k, dtype=np.int64)
    of_group = np.empty(len(names), dtype=np.int64)
    for g in order:
        j = int(np.argmin(load))
        of_group[g] = j
        load[j] += sizes[g]
    return of_group[inverse]


def balanced_folds(m: int, k: int, rng: np.random.Generator,
                   groups: tuple[np.ndarray | None, np.ndarray | None] = (None, None)) -> np.ndarray:
    """Fold index (0..k-1) for 2m images, real rows first: part j of each class forms fold j.

    Without groups every fold holds exactly as many real as synthetic images (+-1); with
    patient groups the classes are split into k parts of near-equal size by whole patients.
    """
    if m < k:
        raise InputError(f"c2st needs at least {k} images per class for {k} folds, got {m}")
    return np.concatenate([_class_folds(m, k, rng, groups[0]), _class_folds(m, k, rng, groups[1])])


def patient_groups(sources: list[str]) -> np.ndarray | None:
    """Patient of each image from genbench's ``<patient>:s<slice>`` source names (prepared data
    sets and phantoms); None unless every source has that form (e.g. files of a folder)."""
    found = [_PATIENT.fullmatch(s) for s in sources]
    if not sources or not all(found):
        return None
    return np.array([f.group(1) for f in found])


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence(list(parts)).generate_state(1, dtype=np.uint64)[0] % (2**63 - 1))


def _train_predict(x: torch.Tensor, y: torch.Tensor, train: np.ndarray, test: np.ndarray,
                   cfg: C2STConfig, seed: int, device: str) -> np.ndarray:
    """Train a fresh network on ``train`` rows; P(synthetic) for the ``test`` rows."""
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = C2STNet(int(x.shape[-1]), cfg.width).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loss_fn = nn.BCEWithLogitsLoss()
    tr = torch.as_tensor(train, dtype=torch.long)
    xt, yt = x[tr].to(device), y[tr].to(device)
    n = len(tr)
    net.train()
    for _ in range(cfg.epochs):
        order = torch.randperm(n, generator=gen).to(device)
        for start in range(0, n, cfg.batch_size):
            idx = order[start:start + cfg.batch_size]
            if len(idx) < 2:  # batch norm needs two samples: a lone last one sits this epoch out
                continue
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
    # Batch statistics for prediction: the exact mean/variance over the training images with
    # the final weights (a running average over training would lag behind the weights).
    with torch.no_grad():
        for mod in net.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.reset_running_stats()
        for start in range(0, n, 256):
            net(xt[start:start + 256])
    net.eval()
    te = torch.as_tensor(test, dtype=torch.long)
    out = []
    with torch.no_grad():
        for start in range(0, len(te), 256):
            out.append(torch.sigmoid(net(x[te[start:start + 256]].to(device))).cpu())
    return torch.cat(out).numpy().astype(np.float64)


def _cross_validate(x: torch.Tensor, labels: np.ndarray, cfg: C2STConfig, seed: int, run: int,
                    device: str, tick: Callable[[], None], groups: np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Held-out P(synthetic) for every row and the fold of each row; ``run`` 0 is the real
    labelling, 1.. the permutations (each its own folds and network seeds)."""
    m = len(labels) // 2
    rng = np.random.default_rng([seed, run, 1])
    # Folds are balanced with respect to the labels of this run (real or permuted).
    by_class = np.concatenate([np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)])
    fold = np.empty(len(labels), dtype=np.int64)
    split = (None, None) if groups is None else (groups[by_class[:m]], groups[by_class[m:]])
    fold[by_class] = balanced_folds(m, cfg.folds, rng, split)
    y = torch.as_tensor(labels, dtype=torch.float32)
    prob = np.empty(len(labels), dtype=np.float64)
    for j in range(cfg.folds):
        test = np.flatnonzero(fold == j)
        train = np.flatnonzero(fold != j)
        prob[test] = _train_predict(x, y, train, test, cfg, _seed(seed, run, j, 7), device)
        tick()
    return prob, fold


@contextmanager
def _cpu_threads(n: int | None) -> Iterator[None]:
    """Run torch's CPU kernels on ``n`` threads inside the block (None: leave as is).

    The network's operations are tiny (at most 64 channels, batches of 32): a second intra-op
    thread gains little on an idle machine and, when other processes hold the cores, made a
    training step 14-20x slower on the 2-core development machine (spinning OpenMP workers).
    One thread also makes the numbers independent of the machine's core count.
    """
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def c2st_images(real: torch.Tensor, synth: torch.Tensor, config: C2STConfig | None = None, *,
                seed: int = 0, device: str = "cpu",
                progress: Callable[[int, int], None] | None = None,
                real_groups: Any = None, synth_groups: Any = None) -> C2STResult:
    """The machine Turing test between two (N, 1, H, W) tensors in [-1, 1].

    ``real_groups``/``synth_groups``: the patient of each image (or None). Slices of one patient
    look alike; were they split across folds, the network could recognise the held-out
    patients' other slices from training and call them real for that reason alone (120 vs 120
    phantom slices of 12 different patients each, 10 per patient: accuracy 0.86 with image
    folds, chance with patient folds). With groups, a patient's images stay in one fold.
    """
    from scipy.stats import norm

    from genbench.turing.stats import Confusion, auc_delong, clustered_proportion

    cfg = config or C2STConfig()
    t0 = time.perf_counter()
    if real.ndim != 4 or synth.ndim != 4 or real.shape[1:] != synth.shape[1:]:
        raise InputError(f"c2st needs two image sets of one size, got {tuple(real.shape)} and "
                         f"{tuple(synth.shape)}")
    if real.shape[-1] != real.shape[-2]:
        raise InputError(f"c2st needs square images, got {tuple(real.shape[-2:])}")
    n_real, n_synth = len(real), len(synth)
    m = min(n_real, n_synth)
    if m < 2 * cfg.folds:
        raise InputError(f"c2st needs at least {2 * cfg.folds} images per set for {cfg.folds} "
                         f"folds, got {n_real} real and {n_synth} synthetic")
    rng = np.random.default_rng([seed, 0, 0])
    pick_r = np.sort(rng.choice(n_real, m, replace=False)) if n_real > m else np.arange(m)
    pick_s = np.sort(rng.choice(n_synth, m, replace=False)) if n_synth > m else np.arange(m)
    x = torch.cat([real[torch.as_tensor(pick_r)], synth[torch.as_tensor(pick_s)]]).float()
    labels = np.r_[np.zeros(m), np.ones(m)].astype(np.int64)
    groups = None
    if real_groups is not None or synth_groups is not None:
        def names(given: Any, n: int, pick: np.ndarray, tag: str) -> list[str]:
            if given is None:
                return [f"{tag}#{i}" for i in pick]  # every image its own group
            if len(given) != n:
                raise ValueError(f"{tag} groups: one per image needed, got {len(given)} for {n}")
            return [f"{tag}:{given[i]}" for i in pick]

        groups = np.array(names(real_groups, n_real, pick_r, "real")
                          + names(synth_groups, n_synth, pick_s, "synth"))

    total = cfg.folds * (1 + cfg.permutations)
    done = [0]

    def tick() -> None:
        done[0] += 1
        if progress is not None:
            progress(done[0], total)

    with _cpu_threads(1 if str(device).startswith("cpu") else None):
        prob, fold = _cross_validate(x, labels, cfg, seed, 0, device, tick, groups)
        perm_acc: list[float] = []
        for b in range(1, cfg.permutations + 1):
            perm = np.random.default_rng([seed, b, 2]).permutation(labels)
            p_b, _ = _cross_validate(x, perm, cfg, seed, b, device, tick, groups)
            perm_acc.append(float(np.mean((p_b > 0.5) == (perm == 1))))
    calls = prob > 0.5
    conf = Confusion.from_labels(labels == 1, calls)
    acc, sens, spec = (conf.accuracy(cfg.level), conf.sensitivity(cfg.level),
                       conf.specificity(cfg.level))
    p_binomial = conf.p_value()
    if groups is not None:
        # Calls on slices of one patient are not independent: intervals with the effective
        # sample size (Korn-Graubard), the test against 0.5 with the same design effect.
        right = calls == (labels == 1)
        acc = clustered_proportion(right, groups, cfg.level)
        sens = clustered_proportion(right[m:], groups[m:], cfg.level)
        spec = clustered_proportion(right[:m], groups[:m], cfg.level)
        z = (acc.value - 0.5) / math.sqrt(0.25 / acc.n_eff)
        p_binomial = float(2 * norm.sf(abs(z)))
    fold_acc = [float(np.mean(calls[fold == j] == (labels[fold == j] == 1))) for j in range(cfg.folds)]
    p_perm = None
    if cfg.permutations:
        p_perm = (1 + sum(a >= acc.value - 1e-12 for a in perm_acc)) / (1 + cfg.permutations)
    return C2STResult(
        accuracy=acc, sensitivity=sens, specificity=spec,
        auc=auc_delong(labels == 1, prob, cfg.level), p_binomial=p_binomial,
        p_permutation=p_perm, permutation_accuracies=perm_acc, fold_accuracies=fold_acc,
        n_per_class=m, n_real=n_real, n_synth=n_synth, config=cfg,
        grouped=groups is not None, elapsed_s=time.perf_counter() - t0, probabilities=prob, labels=labels)


def _metric_result(res: C2STResult, seed: int) -> MetricResult:
    params = {"method": METHOD, **asdict(res.config), "ci_level": res.config.level, "seed": seed,
              **res.summary()}
    return MetricResult(name="c2st", value=res.accuracy.value,
                        ci=(float(res.accuracy.ci[0]), float(res.accuracy.ci[1])),
                        ci_method=CI_METHOD, params=params, elapsed_s=res.elapsed_s,
                        n_real=res.n_real, n_synth=res.n_synth)


def c2st(real: Any, synth: Any, config: C2STConfig | None = None, *, seed: int = 0,
         device: str = "cpu", progress: Callable[[int, int], None] | None = None) -> MetricResult:
    """The machine Turing test between two ImageSets as a ``MetricResult`` named ``c2st``.

    ``value`` = held-out accuracy, ``ci`` its exact binomial interval; sensitivity,
    specificity, AUC, the p-values and the per-fold accuracies are in ``params``.
    """
    res = c2st_images(real.images, synth.images, config, seed=seed, device=device,
                      progress=progress, real_groups=patient_groups(real.sources),
                      synth_groups=patient_groups(synth.sources))
    return _metric_result(res, seed)


def held_out_replicates(res: C2STResult, boot: Any) -> np.ndarray:
    """Bootstrap replicates of the accuracy that resample the held-out calls: real rows on the
    REAL stream, synthetic rows on the SYNTH stream of ``genbench.stats`` (so two models scored
    against one real set share the real resamples, as the paired model test needs). They
    describe the test-set sampling only, not the training's randomness; the reported interval
    stays the exact binomial one."""
    from genbench.stats import REAL, SYNTH

    m = res.n_per_class
    right_real = (res.probabilities[:m] <= 0.5).astype(np.float64)
    right_synth = (res.probabilities[m:] > 0.5).astype(np.float64)
    idx_r, idx_s = boot.indices(m, REAL), boot.indices(m, SYNTH)
    return (right_real[idx_r].mean(axis=1) + right_synth[idx_s].mean(axis=1)) / 2.0


def compute_c2st(ctx: Any) -> MetricResult:
    """Registry entry: options from ``EvalOptions`` (``--c2st-*``, ``--ci``, ``--bootstrap``)."""
    opts = ctx.options
    cfg = C2STConfig(folds=opts.c2st_folds, epochs=opts.c2st_epochs,
                     permutations=opts.c2st_permutations, level=opts.ci)
    with ctx.step("C2ST", cfg.folds * (1 + cfg.permutations)) as step:
        res = c2st_images(ctx.real.images, ctx.synth.images, cfg, seed=ctx.seed, device=ctx.device,
                          progress=step.absolute, real_groups=patient_groups(ctx.real.sources),
                          synth_groups=patient_groups(ctx.synth.sources))
    out = _metric_result(res, ctx.seed)
    boot = ctx.boot
    if boot.enabled:
        out.extra["bootstrap"] = held_out_replicates(res, boot)
        out.json_extra = (*out.json_extra, "bootstrap")
        out.params.update(bootstrap_replicates=boot.replicates, bootstrap_seed=boot.seed,
                          bootstrap_of="held-out calls (for paired model tests; CI is exact)")
    return out
