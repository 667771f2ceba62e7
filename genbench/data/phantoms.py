"""Built-in procedural phantoms: the embedded default source of every preset.

Each generator draws a set of synthetic *patients*; every patient contributes several slices
with correlated anatomy (the same body habitus, organ sizes and contrast, sampled at
different positions along the body axis, or, for chest x-rays, follow-up images with a
different pose and inspiration). Patient-level train/test splits are therefore as meaningful
as on real data. Images come back in the modality's source units (CT in HU, MRI in arbitrary
scanner units, x-ray in [0, 255] gray levels) with an integer label map of the anatomy.

Geometry is in normalised canvas coordinates (see ``_render``): one unit is half the canvas,
i.e. 128 px at the paper's 256 px resolution, which is 256 mm for pelvic CT and heart MRI
(2 mm pixels) and 195 mm for abdomen CT (1.52 mm pixels). Noise is specified at 256 px and
scaled by ``size / 256``, as averaging white noise over larger pixels would.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from genbench.data._render import Canvas, correlated_noise, harmonics, smooth_field
from genbench.errors import UsageError

CHUNK = 64  # slices rendered at once; bounds memory at ~20 MB per array at 256 px


@dataclass(frozen=True)
class PhantomSpec:
    """What a phantom generator produces and how its slices group into patients."""

    name: str
    unit: str
    value_range: tuple[float, float]
    slices_per_patient: int
    labels: dict[int, str]
    render: Callable[
        [dict[str, np.ndarray], int, np.random.Generator], tuple[np.ndarray, np.ndarray]
    ]
    draw: Callable[[np.random.Generator, int, int], dict[str, np.ndarray]]


class _Patients:
    """Per-patient random parameters expanded to per-slice arrays."""

    def __init__(self, rng: np.random.Generator, n: int, per: int) -> None:
        self.rng, self.n, self.per = rng, n, per
        self.count = -(-n // per)
        self.pid = np.repeat(np.arange(self.count), per)[:n]
        # Slices of one patient are spread along the body axis with a random offset.
        base = (np.arange(per) + 0.5) / per
        offs = rng.uniform(-0.5, 0.5, size=(self.count, 1)) / per
        self.z = np.clip((base[None, :] + offs).reshape(-1)[:n], 0.0, 1.0).astype(np.float32)

    def uniform(self, lo: float, hi: float) -> np.ndarray:
        """A patient-level parameter (same for all slices of a patient)."""
        return self.rng.uniform(lo, hi, size=self.count).astype(np.float32)[self.pid]

    def jitter(self, sd: float) -> np.ndarray:
        """Slice-level variation (breathing, peristalsis, positioning)."""
        return self.rng.normal(0.0, sd, size=self.n).astype(np.float32)

    def chance(self, p: float) -> np.ndarray:
        return (self.rng.uniform(size=self.count) < p)[self.pid]

    def shapes(self, amount: float) -> np.ndarray:
        """Patient-level outline perturbation with a little slice-level change."""
        h = harmonics(self.rng, self.count, amount)[self.pid]
        return h + harmonics(self.rng, self.n, amount * 0.25)


def _bump(z: np.ndarray, centre: float, half_width: float) -> np.ndarray:
    """Cross-section scale of an organ along the body axis: sqrt(1 - t^2), 0 outside."""
    t = (z - centre) / half_width
    return np.sqrt(np.clip(1.0 - t * t, 0.0, 1.0)).astype(np.float32)


# ----------------------------------------------------------------------------- pelvic CT

PELVIC_LABELS = {
    0: "air",
    1: "bladder",
    2: "prostate",
    3: "rectum",
    4: "femoral_head_left",
    5: "femoral_head_right",
    6: "bone",
    7: "body",
}


def _pelvic_draw(rng: np.random.Generator, n: int, per: int) -> dict[str, np.ndarray]:
    P = _Patients(rng, n, per)
    z = P.z
    d: dict[str, np.ndarray] = {"z": z, "pid": P.pid}
    d["cy"] = P.uniform(-0.02, 0.06) + P.jitter(0.005)
    d["a"] = P.uniform(0.66, 0.82) * (1 + 0.05 * z)
    d["b"] = P.uniform(0.40, 0.50) * (1 + 0.03 * z)
    d["body_h"] = P.shapes(0.06)
    d["fat"] = P.uniform(0.025, 0.11)
    d["fat_hu"] = P.uniform(-115, -85)
    d["muscle_hu"] = P.uniform(40, 60)
    d["pfat_a"] = P.uniform(0.17, 0.24)
    d["pfat_b"] = P.uniform(0.20, 0.27)
    # Bladder fills upwards from the prostate; its size depends on filling.
    fill = P.uniform(0.5, 1.0)
    d["bl_r"] = fill * P.uniform(0.10, 0.17) * _bump(z, 0.85, 0.55)
    d["bl_ecc"] = P.uniform(1.0, 1.35)
    d["bl_h"] = P.shapes(0.18)
    d["bl_hu"] = P.uniform(2, 18)
    d["bl_y"] = P.uniform(-0.10, -0.03)
    d["pr_r"] = P.uniform(0.055, 0.08) * _bump(z, 0.18, 0.32)
    d["pr_y"] = P.uniform(0.0, 0.05)
    d["pr_hu"] = P.uniform(32, 48)
    d["re_r"] = P.uniform(0.05, 0.075) * (0.85 + 0.3 * P.rng.uniform(size=n)).astype(np.float32)
    d["re_y"] = P.uniform(0.13, 0.18) + 0.06 * z
    d["re_x"] = P.jitter(0.012)
    d["re_h"] = P.shapes(0.2)
    d["gas"] = P.chance(0.65) & (P.rng.uniform(size=n) < 0.8)
    d["gas_r"] = P.uniform(0.3, 0.75) * d["re_r"]
    d["fh_x"] = P.uniform(0.44, 0.52)
    d["fh_y"] = P.uniform(-0.02, 0.05)
    d["fh_r"] = P.uniform(0.085, 0.105) * _bump(z, 0.45, 0.33)
    d["acet"] = _bump(z, 0.55, 0.4)
    d["pubis"] = (z < 0.32).astype(np.float32) * _bump(z, 0.12, 0.25)
    d["sacrum"] = _bump(z, 1.0, 0.55)
    d["ilium"] = _bump(z, 1.0, 0.22)
    d["troch"] = _bump(z, 0.1, 0.25)
    d["cortex_hu"] = P.uniform(900, 1400)
    d["marrow_hu"] = P.uniform(180, 320)
    d["noise"] = P.uniform(12, 22)
    return d


def _bone(cv: Canvas, d, cx, cy, a, b, theta=0.0, active=None, h=None, cortex_frac=0.3) -> None:
    """Cortical shell around cancellous bone, labelled as bone."""
    cv.paint(d["cortex_hu"], 6, cx=cx, cy=cy, a=a, b=b, theta=theta, harmonics=h, active=active)
    inner = np.maximum(a - cortex_frac * np.minimum(a, b), 1e-4)
    innerb = np.maximum(b - cortex_frac * np.minimum(a, b), 1e-4)
    cv.paint(
        d["marrow_hu"], 6, cx=cx, cy=cy, a=inner, b=innerb, theta=theta, harmonics=h, active=active
    )


def _pelvic_render(d, size, rng):
    n = len(d["z"])
    cv = Canvas(n, size, background=-1000.0)
    cy, a, b = d["cy"], d["a"], d["b"]
    # CT couch: a thin curved shell under the patient.
    cv.paint(120.0, None, cx=0.0, cy=cy + b + 0.75, a=1.3, b=0.75)
    cv.paint(-950.0, None, cx=0.0, cy=cy + b + 0.76, a=1.3, b=0.73)
    texture = smooth_field(rng, n, size, 12, 6.0)
    cv.paint(
        d["fat_hu"][:, None, None] + texture, 7, cx=0.0, cy=cy, a=a, b=b, harmonics=d["body_h"]
    )
    t = d["fat"]
    cv.paint(
        d["muscle_hu"][:, None, None] + texture,
        7,
        cx=0.0,
        cy=cy + 0.3 * t,
        a=a - t,
        b=b - 1.3 * t,
        harmonics=d["body_h"],
    )
    # Fat planes between gluteal muscles and inside the pelvis.
    cv.paint(d["fat_hu"] + 10, 7, cx=0.0, cy=cy + 0.02, a=d["pfat_a"], b=d["pfat_b"])
    # Bones.
    for side in (-1, 1):
        fx = side * d["fh_x"] * a / 0.75
        on = d["acet"] > 0
        _bone(
            cv,
            d,
            fx - side * 0.075,
            cy + d["fh_y"] + 0.015,
            0.03 + 0.05 * d["acet"],
            0.05 + 0.07 * d["acet"],
            theta=side * 0.25,
            active=on,
        )
        troch = d["troch"] > 0
        _bone(
            cv,
            d,
            fx + side * 0.1,
            cy + d["fh_y"] + 0.03,
            0.09 * d["troch"] + 1e-3,
            0.06 * d["troch"] + 1e-3,
            active=troch,
        )
        pub = d["pubis"] > 0
        _bone(
            cv,
            d,
            side * 0.17,
            cy - b * 0.5,
            0.13 * d["pubis"] + 1e-3,
            0.035 * d["pubis"] + 1e-3,
            theta=side * 0.35,
            active=pub,
            cortex_frac=0.4,
        )
        il = d["ilium"] > 0
        _bone(
            cv,
            d,
            fx * 0.9,
            cy + 0.08,
            0.05 + 0.02 * d["ilium"],
            0.2 * d["ilium"] + 1e-3,
            theta=side * 0.6,
            active=il,
        )
        # Joint space, then the femoral head itself.
        fh = d["fh_r"] > 0.01
        cv.paint(
            d["muscle_hu"],
            7,
            cx=fx,
            cy=cy + d["fh_y"],
            a=d["fh_r"] + 0.012,
            b=d["fh_r"] + 0.012,
            active=fh,
        )
        label = 4 if side > 0 else 5  # patient left appears on the image's right
        cv.paint(
            d["cortex_hu"], label, cx=fx, cy=cy + d["fh_y"], a=d["fh_r"], b=d["fh_r"], active=fh
        )
        cv.paint(
            d["marrow_hu"],
            label,
            cx=fx,
            cy=cy + d["fh_y"],
            a=d["fh_r"] * 0.8,
            b=d["fh_r"] * 0.8,
            active=fh,
        )
    sac = d["sacrum"] > 0
    _bone(
        cv, d, 0.0, cy + b * 0.72, 0.06 + 0.1 * d["sacrum"], 0.04 + 0.03 * d["sacrum"], active=sac
    )
    cv.paint(
        d["muscle_hu"],
        7,
        cx=0.0,
        cy=cy + b * 0.72,
        a=0.02 + 0.015 * d["sacrum"],
        b=0.015,
        active=sac,
    )
    # Organs: rectum (posterior), prostate, bladder (anterior).
    re_cy = cy + d["re_y"]
    cv.paint(
        d["muscle_hu"] - 5,
        3,
        cx=d["re_x"],
        cy=re_cy,
        a=d["re_r"],
        b=d["re_r"] * 0.85,
        harmonics=d["re_h"],
    )
    cv.paint(
        -950.0,
        3,
        cx=d["re_x"] + 0.01,
        cy=re_cy - 0.01,
        a=d["gas_r"],
        b=d["gas_r"] * 0.8,
        active=d["gas"],
        harmonics=d["re_h"],
    )
    pr = d["pr_r"] > 0.01
    cv.paint(d["pr_hu"], 2, cx=0.0, cy=cy + d["pr_y"], a=d["pr_r"] * 1.15, b=d["pr_r"], active=pr)
    bl = d["bl_r"] > 0.01
    bl_cy = cy + d["bl_y"] + (1 - d["z"]) * 0.03
    cv.paint(
        d["muscle_hu"],
        1,
        cx=0.0,
        cy=bl_cy,
        a=d["bl_r"] * d["bl_ecc"] + 0.008,
        b=d["bl_r"] + 0.008,
        harmonics=d["bl_h"],
        active=bl,
    )
    cv.paint(
        d["bl_hu"],
        1,
        cx=0.0,
        cy=bl_cy,
        a=d["bl_r"] * d["bl_ecc"],
        b=d["bl_r"],
        harmonics=d["bl_h"],
        active=bl,
    )
    noise = correlated_noise(rng, n, size, 0.7) * (d["noise"] * size / 256.0)[:, None, None]
    img = np.clip(cv.img + noise, -1024.0, 3071.0)
    return img, cv.lab


# ----------------------------------------------------------------------------- abdomen CT

ABDOMEN_LABELS = {
    0: "air",
    1: "spleen",
    2: "kidney_right",
    3: "kidney_left",
    6: "liver",
    7: "stomach",
    8: "aorta",
    9: "inferior_vena_cava",
    14: "bone",
    15: "bowel",
    16: "body",
}


def _abdomen_draw(rng, n, per):
    P = _Patients(rng, n, per)
    z = P.z  # 0 = lower kidney poles, 1 = liver dome
    d = {"z": z, "pid": P.pid}
    d["cy"] = P.uniform(-0.04, 0.04)
    d["a"] = P.uniform(0.74, 0.9)
    d["b"] = P.uniform(0.52, 0.64)
    d["body_h"] = P.shapes(0.05)
    d["fat"] = P.uniform(0.03, 0.12)
    d["fat_hu"] = P.uniform(-115, -85)
    d["muscle_hu"] = P.uniform(40, 60)
    contrast = P.uniform(0.6, 1.2)
    d["aorta_hu"] = 40 + 150 * contrast
    d["liver_hu"] = 60 + 55 * contrast + P.jitter(2)
    d["spleen_hu"] = d["liver_hu"] + P.uniform(-5, 15)
    d["kid_hu"] = 40 + 140 * contrast
    d["liver_s"] = _bump(z, 1.1, 0.95) * P.uniform(0.85, 1.15)
    d["liver_h"] = P.shapes(0.22)
    d["liver_x"] = P.uniform(-0.42, -0.32)
    d["spleen_s"] = _bump(z, 0.8, 0.4) * P.uniform(0.8, 1.2)
    d["spleen_h"] = P.shapes(0.2)
    d["kidR_s"] = _bump(z, 0.3, 0.35) * P.uniform(0.85, 1.1)
    d["kidL_s"] = _bump(z, 0.4, 0.35) * P.uniform(0.85, 1.1)
    d["kid_x"] = P.uniform(0.25, 0.32)
    d["stom_s"] = _bump(z, 0.85, 0.4) * P.uniform(0.7, 1.2)
    d["stom_gas"] = P.uniform(0.2, 0.75)
    d["cortex_hu"] = P.uniform(700, 1100)
    d["marrow_hu"] = P.uniform(150, 280)
    d["noise"] = P.uniform(12, 22)
    # Bowel loops: positions per slice (they move between slices), gas or fluid.
    k = 9
    d["bowel_x"] = rng.uniform(-0.45, 0.45, size=(n, k)).astype(np.float32)
    d["bowel_y"] = rng.uniform(-0.5, 0.05, size=(n, k)).astype(np.float32)
    d["bowel_r"] = rng.uniform(0.035, 0.075, size=(n, k)).astype(np.float32)
    d["bowel_gas"] = rng.uniform(size=(n, k)) < 0.45
    d["bowel_on"] = rng.uniform(size=(n, k)) < (0.35 + 0.6 * (1 - z))[:, None]
    d["rib_phase"] = P.uniform(0, 1)
    return d


def _abdomen_render(d, size, rng, frng=None):
    n = len(d["z"])
    cv = Canvas(n, size, background=-1000.0)
    cy, a, b = d["cy"], d["a"], d["b"]
    cv.paint(120.0, None, cx=0.0, cy=cy + b + 0.9, a=1.4, b=0.88)
    cv.paint(-950.0, None, cx=0.0, cy=cy + b + 0.91, a=1.4, b=0.86)
    texture = smooth_field(rng, n, size, 12, 6.0)
    t = d["fat"]
    cv.paint(
        d["fat_hu"][:, None, None] + texture, 16, cx=0.0, cy=cy, a=a, b=b, harmonics=d["body_h"]
    )
    cv.paint(d["muscle_hu"], 16, cx=0.0, cy=cy, a=a - t, b=b - t, harmonics=d["body_h"])
    cv.paint(
        d["fat_hu"][:, None, None] + 15 + texture,
        16,
        cx=0.0,
        cy=cy - 0.01,
        a=a - t - 0.04,
        b=b - t - 0.035,
        harmonics=d["body_h"],
    )
    spine_y = cy + b * 0.5
    # Paraspinal and psoas muscles.
    for side in (-1, 1):
        cv.paint(d["muscle_hu"], 16, cx=side * 0.14, cy=spine_y + 0.17, a=0.13, b=0.1)
        cv.paint(
            d["muscle_hu"],
            16,
            cx=side * 0.12,
            cy=spine_y - 0.02,
            a=0.05 + 0.05 * (1 - d["z"]),
            b=0.06,
            active=d["z"] < 0.7,
        )
    # Ribs along the body wall at the upper levels.
    for i in range(4):
        ang = np.pi * (0.42 + 0.13 * i) + d["rib_phase"] * 0.25
        for side in (-1, 1):
            rx = side * (a - t - 0.06) * np.sin(ang)
            ry = cy - (b - t - 0.06) * np.cos(ang)
            _ct_bone(
                cv, d, 14, rx, ry, 0.03, 0.016, theta=side * (np.pi / 2 - ang), active=d["z"] > 0.5
            )
    # Vertebra: body, canal, posterior elements.
    _ct_bone(cv, d, 14, 0.0, spine_y + 0.17, 0.035, 0.07, active=None)
    _ct_bone(cv, d, 14, 0.0, spine_y, 0.1, 0.085)
    _ct_bone(cv, d, 14, 0.0, spine_y + 0.12, 0.07, 0.05)
    cv.paint(15.0, 16, cx=0.0, cy=spine_y + 0.115, a=0.035, b=0.03)
    # Vessels in front of the spine.
    cv.paint(d["aorta_hu"], 8, cx=0.04, cy=spine_y - 0.14, a=0.055, b=0.055)
    cv.paint(d["aorta_hu"] * 0.8, 9, cx=-0.11, cy=spine_y - 0.13, a=0.06, b=0.042)
    # Viscera are clipped to the peritoneal cavity afterwards, so they never cross the wall.
    base_img, base_lab = cv.img.copy(), cv.lab.copy()
    # Bowel loops first, so that solid organs displace them.
    for j in range(d["bowel_x"].shape[1]):
        on = d["bowel_on"][:, j]
        bx, by, br = d["bowel_x"][:, j], cy + d["bowel_y"][:, j], d["bowel_r"][:, j]
        cv.paint(d["muscle_hu"] - 10, 15, cx=bx, cy=by, a=br, b=br * 0.85, active=on)
        lumen = np.where(d["bowel_gas"][:, j], -900.0, 15.0).astype(np.float32)
        cv.paint(lumen, 15, cx=bx, cy=by, a=br * 0.75, b=br * 0.6, active=on)
    # Kidneys with cortex and medulla.
    for side, key, lab in ((-1, "kidR_s", 2), (1, "kidL_s", 3)):
        s = d[key]
        on = s > 0.05
        kx, ky = side * d["kid_x"], spine_y - 0.01
        cv.paint(
            d["fat_hu"],
            16,
            cx=kx,
            cy=ky,
            a=0.12 * s + 0.025,
            b=0.16 * s + 0.025,
            theta=side * 0.5,
            active=on,
        )
        cv.paint(
            d["kid_hu"], lab, cx=kx, cy=ky, a=0.095 * s, b=0.14 * s, theta=side * 0.5, active=on
        )
        cv.paint(
            d["kid_hu"] * 0.6,
            lab,
            cx=kx - side * 0.01,
            cy=ky,
            a=0.06 * s,
            b=0.09 * s,
            theta=side * 0.5,
            active=on,
        )
        cv.paint(
            d["fat_hu"] + 30,
            lab,
            cx=kx - side * 0.05 * s,
            cy=ky,
            a=0.025 * s,
            b=0.05 * s,
            theta=side * 0.5,
            active=on,
        )
    # Liver (patient right = image left), spleen and stomach (patient left).
    ls = d["liver_s"]
    cv.paint(
        d["liver_hu"][:, None, None] + texture * 0.5,
        6,
        cx=d["liver_x"] * (0.7 + 0.3 * ls),
        cy=cy - 0.05,
        a=0.38 * ls,
        b=0.42 * ls,
        theta=0.3,
        harmonics=d["liver_h"],
        active=ls > 0.05,
    )
    if frng is not None:
        _liver_lesion(cv, d, d["liver_x"] * (0.7 + 0.3 * ls), cy - 0.05, frng)
    ss = d["spleen_s"]
    cv.paint(
        d["spleen_hu"],
        1,
        cx=0.5 * a,
        cy=cy + 0.22,
        a=0.1 * ss,
        b=0.19 * ss,
        theta=-0.6,
        harmonics=d["spleen_h"],
        active=ss > 0.05,
    )
    st = d["stom_s"]
    on = st > 0.05
    cv.paint(
        d["muscle_hu"], 7, cx=0.22, cy=cy - 0.2, a=0.19 * st, b=0.14 * st, theta=0.4, active=on
    )
    cv.paint(20.0, 7, cx=0.22, cy=cy - 0.2, a=0.17 * st, b=0.12 * st, theta=0.4, active=on)
    cv.paint(
        -920.0,
        7,
        cx=0.24,
        cy=cy - 0.25,
        a=0.14 * st * d["stom_gas"],
        b=0.07 * st * d["stom_gas"],
        theta=0.25,
        active=on,
    )
    cavity, _ = cv.coverage(
        cx=0.0,
        cy=cy - 0.01,
        a=a - t - 0.06,
        b=b - t - 0.05,
        harmonics=d["body_h"],
        edge=1.0,
        window=False,
    )
    cv.img = base_img + (cv.img - base_img) * cavity
    cv.lab = np.where(cavity >= 0.5, cv.lab, base_lab).astype(np.int16)
    noise = correlated_noise(rng, n, size, 0.7) * (d["noise"] * size / 256.0)[:, None, None]
    img = np.clip(cv.img + noise, -1024.0, 3071.0)
    return img, cv.lab


def _ct_bone(cv, d, label, cx, cy, a, b, theta=0.0, active=None) -> None:
    cv.paint(d["cortex_hu"], label, cx=cx, cy=cy, a=a, b=b, theta=theta, active=active)
    m = 0.35 * np.minimum(a, b)
    cv.paint(
        d["marrow_hu"],
        label,
        cx=cx,
        cy=cy,
        a=np.maximum(a - m, 1e-4),
        b=np.maximum(b - m, 1e-4),
        theta=theta,
        active=active,
    )


# ----------------------------------------------------------------------------- heart MRI

HEART_LABELS = {
    0: "background",
    1: "right_ventricle",
    2: "myocardium",
    3: "left_ventricle",
    4: "lung",
    5: "body",
}


def _heart_draw(rng, n, per):
    P = _Patients(rng, n, per)
    z = P.z  # 0 = base, 1 = apex
    d = {"z": z, "pid": P.pid}
    d["fov"] = P.uniform(0.56, 0.74)
    d["fov_ar"] = P.uniform(0.8, 1.0)
    d["cx"] = P.uniform(-0.05, 0.05)
    d["cy"] = P.uniform(-0.03, 0.05)
    d["a"] = P.uniform(0.62, 0.78)
    d["b"] = P.uniform(0.42, 0.52)
    d["fat"] = P.uniform(0.02, 0.06)
    d["body_h"] = P.shapes(0.05)
    es = P.rng.uniform(size=n) < 0.5  # end-systole: smaller cavity, thicker wall
    d["lv_r"] = P.uniform(0.1, 0.14) * (1 - 0.55 * z**1.5) * np.where(es, 0.68, 1.0)
    d["myo_t"] = P.uniform(0.035, 0.055) * np.where(es, 1.35, 1.0) * (1 - 0.2 * z)
    d["rv_s"] = P.uniform(0.85, 1.25) * _bump(z, 0.0, 0.95) * np.where(es, 0.75, 1.0)
    d["hx"] = P.uniform(0.06, 0.16) + P.jitter(0.01)
    d["hy"] = P.uniform(-0.04, 0.06) + P.jitter(0.01)
    d["lv_h"] = P.shapes(0.06)
    d["rv_h"] = P.shapes(0.15)
    d["liver"] = _bump(z, 1.0, 0.7) * P.uniform(0.6, 1.2)
    d["blood"] = P.uniform(0.85, 1.0)
    d["myo"] = P.uniform(0.22, 0.32)
    d["fatv"] = P.uniform(0.75, 0.95)
    d["musc"] = P.uniform(0.25, 0.35)
    d["gain"] = P.uniform(150, 900)
    d["bias"] = P.uniform(0.15, 0.4)
    d["noise"] = P.uniform(0.02, 0.045)
    return d


def _heart_render(d, size, rng):
    n = len(d["z"])
    cv = Canvas(n, size, background=0.0)
    cx, cy, a, b = d["cx"], d["cy"], d["a"], d["b"]
    cv.paint(d["fatv"], 5, cx=cx, cy=cy, a=a, b=b, harmonics=d["body_h"])
    t = d["fat"]
    cv.paint(d["musc"], 5, cx=cx, cy=cy, a=a - t, b=b - t, harmonics=d["body_h"])
    # Lungs, kept inside the chest wall.
    base_img, base_lab = cv.img.copy(), cv.lab.copy()
    for side in (-1, 1):
        cv.paint(
            0.04,
            4,
            cx=cx + side * 0.36 * a / 0.7,
            cy=cy + 0.02,
            a=0.2 * a / 0.7,
            b=b - t - 0.1,
            harmonics=d["body_h"] * 2,
        )
    wall, _ = cv.coverage(
        cx=cx, cy=cy, a=a - t - 0.04, b=b - t - 0.04, harmonics=d["body_h"], window=False
    )
    cv.img = base_img + (cv.img - base_img) * wall
    cv.lab = np.where(wall >= 0.5, cv.lab, base_lab).astype(np.int16)
    liv = d["liver"] > 0.05
    cv.paint(
        0.38,
        5,
        cx=cx - 0.25,
        cy=cy + 0.2,
        a=0.3 * d["liver"],
        b=0.18 * d["liver"],
        theta=-0.3,
        active=liv,
    )
    # Spine and descending aorta posteriorly.
    cv.paint(0.45, 5, cx=cx, cy=cy + b - t - 0.1, a=0.065, b=0.06)
    cv.paint(d["blood"] * 0.9, 5, cx=cx + 0.08, cy=cy + b - t - 0.17, a=0.04, b=0.04)
    hx, hy = cx + d["hx"], cy + d["hy"]
    lv, my = d["lv_r"], d["myo_t"]
    # Epicardial fat, right ventricle (crescent on the image's left), LV wall, LV cavity.
    cv.paint(
        d["musc"] * 1.2,
        5,
        cx=hx - 0.06,
        cy=hy,
        a=lv + my + 0.1 * d["rv_s"] + 0.06,
        b=lv + my + 0.06,
        harmonics=d["lv_h"],
    )
    cv.paint(
        d["fatv"] * 0.8,
        5,
        cx=hx + 0.02,
        cy=hy + 0.01,
        a=lv + my + 0.015,
        b=lv + my + 0.015,
        harmonics=d["lv_h"],
    )
    rv = d["rv_s"] > 0.05
    cv.paint(
        d["blood"] * 0.95,
        1,
        cx=hx - (lv + my) * 0.85,
        cy=hy - 0.01,
        a=0.11 * d["rv_s"] + 0.02,
        b=(lv + my) * 1.1,
        theta=0.15,
        harmonics=d["rv_h"],
        active=rv,
    )
    cv.paint(d["myo"], 2, cx=hx, cy=hy, a=lv + my, b=(lv + my) * 0.97, harmonics=d["lv_h"] * 0.5)
    cv.paint(d["blood"], 3, cx=hx, cy=hy, a=lv, b=lv * 0.95, harmonics=d["lv_h"])
    # Papillary muscles: dark spots inside the cavity, labelled as cavity as in ACDC.
    for ang in (0.6, 2.3):
        cv.paint(
            d["myo"] * 1.1,
            3,
            cx=hx + 0.6 * lv * np.cos(ang),
            cy=hy + 0.6 * lv * np.sin(ang),
            a=0.13 * lv,
            b=0.11 * lv,
        )
    bias = np.exp(smooth_field(rng, n, size, 3, d["bias"]))
    signal = cv.img * bias * d["gain"][:, None, None]
    sigma = (d["noise"] * d["gain"] * size / 256.0)[:, None, None]
    n1 = rng.standard_normal(signal.shape, dtype=np.float32) * sigma
    n2 = rng.standard_normal(signal.shape, dtype=np.float32) * sigma
    img = np.sqrt((signal + n1) ** 2 + n2**2)  # Rician magnitude noise
    # The scanner's field of view is a rectangle; outside it the padded canvas is exactly 0.
    g = (np.arange(size, dtype=np.float32) + 0.5) / size * 2 - 1
    inside = (np.abs(g)[None, None, :] <= d["fov"][:, None, None]) & (
        np.abs(g)[None, :, None] <= (d["fov"] * d["fov_ar"])[:, None, None]
    )
    img = np.where(inside, img, 0.0).astype(np.float32)
    lab = np.where(inside, cv.lab, 0).astype(np.int16)
    return img, lab


# ----------------------------------------------------------------------------- chest x-ray

CHEST_LABELS = {0: "background", 1: "lung_right", 2: "lung_left", 3: "heart", 4: "body"}


def _chest_draw(rng, n, per):
    P = _Patients(rng, n, per)
    d = {"z": P.z, "pid": P.pid}
    d["a"] = P.uniform(0.78, 0.95) + P.jitter(0.01)
    d["cx"] = P.uniform(-0.04, 0.04) + P.jitter(0.015)
    d["lung_a"] = P.uniform(0.29, 0.36)
    # The lungs stay inside the rib cage: their outer edge is within 82% of the trunk's half-width.
    d["lung_a"] = np.minimum(d["lung_a"], (0.82 * d["a"] - 0.14) / 1.95)
    d["lung_b"] = P.uniform(0.55, 0.66) * (1 + P.jitter(0.04))  # inspiration depth
    d["lung_y"] = P.uniform(-0.12, 0.0)
    d["lung_h"] = P.shapes(0.08)
    d["dome"] = P.uniform(0.02, 0.08)
    d["heart_a"] = P.uniform(0.24, 0.32)
    d["heart_b"] = P.uniform(0.19, 0.25)
    d["heart_x"] = P.uniform(0.08, 0.14)
    d["rib_period"] = P.uniform(0.15, 0.19)
    d["rib_phase"] = P.uniform(0, 1) + P.jitter(0.05)
    d["tilt"] = P.jitter(0.03)
    d["gain"] = P.uniform(0.8, 1.1)
    d["gamma"] = P.uniform(0.8, 1.2)
    d["bubble"] = P.chance(0.6)
    return d


def _chest_render(d, size, rng, frng=None):
    n = len(d["z"])
    cv = Canvas(n, size, background=0.0)
    cx, a = d["cx"], d["a"]
    # Attenuation map: trunk, neck and shoulders as ellipsoid chords.
    trunk = cv.project(1.0, cx=cx, cy=0.5, a=a, b=1.45, theta=d["tilt"], window=False)
    inside = np.clip((trunk - 0.4) / 0.1, 0.0, 1.0)  # the rib cage keeps the lungs off the skin
    cv.project(0.6, cx=cx, cy=-0.95, a=0.22, b=0.5)
    cv.project(0.35, cx=cx, cy=-0.62, a=a * 1.12, b=0.3)
    for side in (-1, 1):
        cv.project(0.3, cx=cx + side * 0.7 * a, cy=-0.66, a=0.42, b=0.26, theta=side * 0.25)
    body = cv.img > 0.02
    lungs = np.zeros_like(cv.img)
    labels = np.where(body, 4, 0).astype(np.int16)
    # Where a finding may appear: lung coverage times a lateral/basal weight (filled only when a
    # finding is drawn, so the unlabelled phantom does exactly the work it always did).
    periphery = np.zeros_like(cv.img) if frng is not None else None
    for side, lab in ((-1, 1), (1, 2)):
        lx = cx + side * (0.14 + d["lung_a"] * 0.95)
        ly = d["lung_y"] - (0.02 if side > 0 else 0.0) + (0.0 if side > 0 else -d["dome"])
        cov, (r, c) = cv.coverage(
            cx=lx,
            cy=ly,
            a=d["lung_a"],
            b=d["lung_b"],
            theta=-side * 0.08,
            harmonics=d["lung_h"],
            edge=2.0,
        )
        prof, _ = cv.coverage(
            cx=lx,
            cy=ly,
            a=d["lung_a"],
            b=d["lung_b"],
            theta=-side * 0.08,
            harmonics=d["lung_h"],
            thickness=True,
        )
        cov = cov * inside[:, r, c]
        lungs[:, r, c] += 0.45 * np.sqrt(prof) * cov
        sub = labels[:, r, c]
        sub[cov >= 0.5] = lab
        labels[:, r, c] = sub
        if periphery is not None:
            _chest_periphery(periphery, cv, r, c, cov, side, lx, ly, d)
    cv.img -= lungs
    if periphery is not None:
        _chest_opacities(cv, labels, periphery, lungs, d, frng)
    # Ribs: periodic stripes in a warped coordinate; posterior ribs curve down laterally.
    g = cv.grid
    u = g[None, None, :] - cx[:, None, None]
    v = g[None, :, None]
    s = np.abs(u) / 0.8
    w = v - 0.45 * s**2 + 0.12 * s
    post = np.cos(2 * np.pi * (w / d["rib_period"][:, None, None] + d["rib_phase"][:, None, None]))
    ribs = np.clip((post - 0.65) * 5.0, 0.0, 1.0)
    w2 = v + 0.35 * (1 - s) ** 2
    ant = np.cos(
        2
        * np.pi
        * (w2 / (d["rib_period"] * 1.2)[:, None, None] + d["rib_phase"][:, None, None] + 0.3)
    )
    ribs = ribs + 0.5 * np.clip((ant - 0.6) * 4.0, 0.0, 1.0)
    thorax = np.clip(lungs / 0.3, 0, 1)
    cv.img += 0.07 * ribs * np.clip(thorax * 1.5, 0, 1) * (np.abs(u) > 0.07)
    # Heart and spine add attenuation over the mediastinum.
    hx = cx + d["heart_x"]
    hy = d["lung_y"] + d["lung_b"] * 0.62
    cv.project(0.28, cx=hx, cy=hy, a=d["heart_a"], b=d["heart_b"], theta=-0.35)
    cv.project(0.1, cx=cx + 0.02, cy=-0.25, a=0.14, b=0.45)  # upper mediastinum, aortic knob
    cv.project(0.08, cx=cx, cy=0.0, a=0.06, b=1.4)  # spine
    cv.project(-0.12, cx=cx, cy=-0.6, a=0.03, b=0.3)  # trachea
    hcov, (r, c) = cv.coverage(cx=hx, cy=hy, a=d["heart_a"], b=d["heart_b"], theta=-0.35)
    sub = labels[:, r, c]
    sub[hcov >= 0.5] = 3
    labels[:, r, c] = sub
    for side in (-1, 1):  # clavicles
        cv.project(
            0.12,
            cx=cx + side * 0.3,
            cy=-0.66 - 0.06 * (1 + side * 0.0),
            a=0.3,
            b=0.025,
            theta=side * 0.2,
        )
    # Gastric bubble under the left hemidiaphragm.
    cv.project(
        -0.25, cx=cx + 0.35, cy=d["lung_y"] + d["lung_b"] + 0.1, a=0.08, b=0.05, active=d["bubble"]
    )
    att = np.clip(cv.img, 0.0, None)
    att += correlated_noise(rng, n, size, 0.8) * 0.02 * (size / 256.0) ** 0.5
    gray = 1.0 - np.exp(-2.2 * np.clip(att * d["gain"][:, None, None], 0, None))
    gray = np.clip(gray / (1 - np.exp(-2.2 * 1.25)), 0, 1) ** d["gamma"][:, None, None]
    return (gray * 255.0).astype(np.float32), labels



# ----------------------------------------------------------------------------- findings (class labels)
#
# A finding turns a phantom into a labelled data set: class 1 images show it, class 0 images are
# the plain phantom. Its parameters come from a random stream of their own (a third child of the
# phantom's seed), so a class-0 image is bit-identical to the unlabelled phantom's image of the
# same index and seed, and a class-1 image differs from it only where the finding is drawn.
# ``strength`` tunes the difficulty: 0 draws nothing (the labels are then unlearnable), 1 is the
# default, larger is easier; the severity also varies between patients, so some class-1 images
# show very little even at strength 1.


@dataclass(frozen=True)
class Finding:
    """A labelled finding of a phantom: what class 1 shows and how it is drawn."""

    name: str
    classes: tuple[str, str]  # (class 0, class 1)
    label: int  # the finding's id in the anatomy label map
    label_name: str
    per_patient: bool  # True: every slice of a patient has the patient's class
    description: str
    draw: Callable[[np.random.Generator, dict[str, np.ndarray], float, float], dict[str, np.ndarray]]


def _chest_finding_draw(rng, d, prevalence, strength):
    pid = d["pid"]
    count, n = int(pid.max()) + 1, len(pid)
    sick = rng.uniform(size=count) < prevalence
    severity = rng.uniform(0.15, 1.0, size=count)
    extent = rng.uniform(0.2, 0.65, size=count)
    follow_up = rng.uniform(0.75, 1.25, size=n)  # follow-up films: the opacities evolve
    y = sick[pid]
    return {
        "f_y": y.astype(np.int64),
        "f_sev": np.where(y, severity[pid] * follow_up * strength, 0.0).astype(np.float32),
        # Threshold of a unit smooth field: larger extent -> lower threshold -> more lung covered.
        "f_thr": (1.2 - 2.0 * extent[pid]).astype(np.float32),
    }


def _chest_periphery(out, cv, r, c, cov, side, lx, ly, d) -> None:
    """Lateral and basal weight inside one lung (COVID-19 opacities are peripheral, lower-zone)."""
    u = cv.grid[c][None, None, :]
    v = cv.grid[r][None, :, None]
    lateral = side * (u - np.asarray(lx)[:, None, None]) / d["lung_a"][:, None, None]
    basal = (v - np.asarray(ly)[:, None, None]) / d["lung_b"][:, None, None]
    w = np.clip(0.45 + 0.6 * lateral + 0.4 * basal, 0.0, 1.0) * cov
    out[:, r, c] = np.maximum(out[:, r, c], w)


def _chest_opacities(cv, labels, periphery, lungs, d, rng) -> None:
    """Bilateral patchy ground-glass opacities with denser consolidation at their cores.

    Added as attenuation before exposure, so they whiten the lungs as real air-space disease
    does: ground glass gives back about half of the density the aerated lung lacks,
    consolidation up to all of it (fluid-filled lung is as dense as soft tissue, never denser).
    """
    field = smooth_field(rng, cv.n, cv.size, 12, 1.0)
    thr = d["f_thr"][:, None, None]
    ggo = np.clip((field - thr) * 1.5, 0.0, 1.0)
    consolidation = np.clip((field - thr - 0.9) * 2.5, 0.0, 1.0)
    opacity = d["f_sev"][:, None, None] * (0.225 * ggo + 0.3 * consolidation) * periphery
    opacity = np.minimum(opacity, lungs)
    cv.img += opacity
    labels[(opacity > 0.02) & np.isin(labels, (1, 2))] = CHEST_FINDING_LABEL


CHEST_FINDING_LABEL = 5
LIVER_LESION_LABEL = 18


def _liver_lesion_draw(rng, d, prevalence, strength):
    pid, z = d["pid"], d["z"]
    count = int(pid.max()) + 1
    sick = rng.uniform(size=count) < prevalence
    z0 = rng.uniform(0.45, 0.95, size=count)
    half = rng.uniform(0.12, 0.25, size=count)
    radius = rng.uniform(0.05, 0.1, size=count)
    angle = rng.uniform(0.0, 2 * np.pi, size=count)
    offset = rng.uniform(0.0, 0.45, size=count)
    contrast = rng.uniform(25.0, 55.0, size=count)  # HU below the surrounding liver
    t = (z - z0[pid]) / half[pid]
    # A spherical lesion: labelled where its cross-section is at least half its radius, and drawn
    # exactly there, so "class 1" means "a lesion is in this slice".
    y = sick[pid] & (np.abs(t) <= np.sqrt(0.75)) & (d["liver_s"] > 0.3)
    rs = radius[pid] * np.sqrt(np.clip(1.0 - t * t, 0.0, 1.0))
    return {
        "f_y": y.astype(np.int64),
        "f_r": np.minimum(rs, 0.19 * d["liver_s"]).astype(np.float32),
        "f_angle": angle[pid].astype(np.float32),
        "f_offset": offset[pid].astype(np.float32),
        "f_hu": (contrast[pid] * strength).astype(np.float32),
    }


def _liver_lesion(cv, d, liver_cx, liver_cy, rng) -> None:
    """A hypodense, slightly mottled lesion (a metastasis) inside the liver, labelled 18."""
    ls = d["liver_s"]
    cx = liver_cx + d["f_offset"] * 0.38 * ls * np.cos(d["f_angle"])
    cy = liver_cy + d["f_offset"] * 0.42 * ls * np.sin(d["f_angle"])
    mottle = smooth_field(rng, cv.n, cv.size, 24, 6.0)
    cov, (r, c) = cv.coverage(cx=cx, cy=cy, a=d["f_r"], b=d["f_r"] * 0.9, active=d["f_y"] > 0)
    if cov.size == 0:
        return
    cov = cov * (cv.lab[:, r, c] == 6)
    sub = cv.img[:, r, c]
    value = d["liver_hu"][:, None, None] - d["f_hu"][:, None, None] + mottle[:, r, c]
    sub += (value - sub) * cov
    cv.img[:, r, c] = sub
    lab = cv.lab[:, r, c]
    lab[cov >= 0.5] = LIVER_LESION_LABEL
    cv.lab[:, r, c] = lab


FINDINGS: dict[str, Finding] = {
    "chest": Finding(
        "covid-pneumonia",
        ("normal", "covid"),
        CHEST_FINDING_LABEL,
        "opacity",
        True,
        "bilateral, peripheral, lower-zone ground-glass opacities with consolidation at their "
        "cores, of varied severity and extent (COVID-19 pneumonia) vs normal lungs; one class per "
        "synthetic patient",
        _chest_finding_draw,
    ),
    "abdomen": Finding(
        "liver-lesion",
        ("normal", "lesion"),
        LIVER_LESION_LABEL,
        "liver_lesion",
        False,
        "a hypodense liver lesion (25-55 HU below the liver, 1.5-4 cm) vs none; a slice is class "
        "1 when it cuts the lesion through at least half its radius",
        _liver_lesion_draw,
    ),
}

# ----------------------------------------------------------------------------- registry

SPECS: dict[str, PhantomSpec] = {
    "pelvic": PhantomSpec(
        "pelvic", "HU", (-1024.0, 3071.0), 10, PELVIC_LABELS, _pelvic_render, _pelvic_draw
    ),
    "abdomen": PhantomSpec(
        "abdomen", "HU", (-1024.0, 3071.0), 10, ABDOMEN_LABELS, _abdomen_render, _abdomen_draw
    ),
    "heart": PhantomSpec(
        "heart", "a.u.", (0.0, np.inf), 10, HEART_LABELS, _heart_render, _heart_draw
    ),
    "chest": PhantomSpec(
        "chest", "gray", (0.0, 255.0), 3, CHEST_LABELS, _chest_render, _chest_draw
    ),
}


@dataclass
class LabelledPhantoms:
    """A phantom set with a finding: images, anatomy masks, patients and class labels."""

    images: np.ndarray  # (n, H, W) float32, source units
    masks: np.ndarray  # (n, H, W) int16 anatomy labels (the finding has its own id)
    patients: np.ndarray  # (n,) int64 synthetic patient index
    y: np.ndarray  # (n,) int64 class index into ``classes``
    classes: tuple[str, str]
    finding: Finding


def _generate(name, n, size, seed, finding=None):
    if name not in SPECS:
        raise UsageError(f"no phantom for preset {name!r}; choose one of {', '.join(SPECS)}")
    if n < 1 or size < 8:
        raise UsageError(f"phantoms need n >= 1 and size >= 8 (got n={n}, size={size})")
    spec = SPECS[name]
    root = np.random.SeedSequence([seed, sum(map(ord, name))])
    # The third child feeds only findings: the first two (and so the plain phantom) are the same
    # whether or not a finding is drawn.
    param_seed, render_seed, finding_seed = root.spawn(3)
    params = spec.draw(np.random.default_rng(param_seed), n, spec.slices_per_patient)
    n_chunks = -(-n // CHUNK)
    finding_chunks = None
    if finding is not None:
        kind, prevalence, strength = finding
        f_param, f_render = finding_seed.spawn(2)
        params.update(kind.draw(np.random.default_rng(f_param), params, prevalence, strength))
        finding_chunks = f_render.spawn(n_chunks)
    images = np.empty((n, size, size), dtype=np.float32)
    labels = np.empty((n, size, size), dtype=np.int16)
    chunk_seeds = render_seed.spawn(n_chunks)
    for k, start in enumerate(range(0, n, CHUNK)):
        stop = min(n, start + CHUNK)
        part = {key: val[start:stop] for key, val in params.items()}
        rng = np.random.default_rng(chunk_seeds[k])
        if finding_chunks is None:
            img, lab = spec.render(part, size, rng)
        else:
            img, lab = spec.render(part, size, rng, np.random.default_rng(finding_chunks[k]))
        images[start:stop] = img
        labels[start:stop] = lab
    return images, labels, params


def generate_phantoms(
    name: str, n: int, size: int, seed: int = 0, *, return_patients: bool = False
) -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` phantom slices of ``size`` x ``size`` pixels for preset ``name``, reproducible by ``seed``.

    Returns ``(images float32 (n, H, W) in source units, labels int16 (n, H, W))`` and, with
    ``return_patients``, the synthetic patient index of each slice (n,).
    """
    images, labels, params = _generate(name, n, size, seed)
    if return_patients:
        return images, labels, params["pid"].astype(np.int64)
    return images, labels


def generate_labelled_phantoms(
    name: str,
    n: int,
    size: int,
    seed: int = 0,
    *,
    prevalence: float = 0.5,
    strength: float = 1.0,
) -> LabelledPhantoms:
    """The phantom of preset ``name`` with its finding (see ``FINDINGS``) and a class per image.

    ``prevalence``: the share of synthetic patients with the finding; ``strength``: its
    visibility (0 invisible, 1 default, larger easier). Same seed, same images and labels.
    """
    if name not in FINDINGS:
        have = ", ".join(FINDINGS)
        raise UsageError(f"the {name} phantom has no labelled finding; phantoms with one: {have}")
    if not 0.0 <= prevalence <= 1.0:
        raise UsageError(f"prevalence must be in [0, 1], got {prevalence}")
    if not (strength >= 0.0 and np.isfinite(strength)):
        raise UsageError(f"finding strength must be a finite number >= 0, got {strength}")
    kind = FINDINGS[name]
    images, masks, params = _generate(name, n, size, seed, (kind, prevalence, strength))
    return LabelledPhantoms(
        images, masks, params["pid"].astype(np.int64), params["f_y"].astype(np.int64),
        kind.classes, kind,
    )
