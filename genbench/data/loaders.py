"""Real-format loaders: find each patient's files, then apply the paper's preprocessing.

``discover(preset, root, options, limit)`` lists cases (one per patient) without reading pixels,
so the cache can be checked first; ``load_case(preset, case, size, options)`` returns that
patient's canonical slices (values in [-1, 1], ``size`` x ``size``).

Pipelines (per preset, see ``presets.py``):
* chest: PNG -> gray levels [0, 255] (16-bit scaled by bit depth) -> antialiased resize.
* heart: NIfTI frame -> in-plane resample to 2x2 mm -> per-scan min-max -> pad/crop 256
  with the scan's minimum -> resize.
* pelvic / abdomen: CT (DICOM series or NIfTI) and label map -> resample (labels by nearest
  neighbour) -> keep slices with selection labels -> HU window -> pad/crop 256 with air
  (-1024 HU, i.e. -1 canonical) -> resize.

Class labels (for the utility experiment), ``discover_labelled``:

* ``labels="folders"``: ``DIR/<class>/...`` -- each sub-folder is a class (e.g. the COVID-19
  Radiography Database's ``COVID/`` and ``Normal/``) holding the preset's usual layout; every
  slice of a case gets its folder's class. Classes are in sorted order, except that a folder
  named normal / healthy / negative / control / no finding comes first (class 0), so that with
  two classes the finding is class 1, the positive one. Patient ids are kept as they are, so
  one patient found in two class folders still falls on one side of the split.
* ``labels="csv"`` with ``label_finding=NAME`` (chest): ChestX-ray14's ``Finding Labels``
  column; images listing NAME are class NAME, images with exactly ``No Finding`` are class
  ``No Finding``, all others are left out. The image cap (5500, or ``n``) applies per class.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from genbench.data.presets import Preset
from genbench.data.volumes import (
    Volume,
    is_dicom,
    load_dicom_series,
    load_mask_array,
    load_nifti,
    nifti_shape,
    pad_crop,
    resample,
    resize_stack,
)
from genbench.errors import InputError, UsageError


@dataclass
class Case:
    """One patient's input files (``role -> paths``) and how they were found."""

    patient: str
    files: dict[str, list[Path]]
    fmt: str
    detail: dict = field(default_factory=dict)

    def all_files(self) -> list[Path]:
        return [p for paths in self.files.values() for p in paths]


@dataclass
class CaseSlices:
    patient: str
    images: np.ndarray  # (m, size, size) canonical float32
    sources: list[str]
    labels: np.ndarray | None = None  # (m,) class index per slice, when the data are labelled


def _nifti(p: Path) -> bool:
    return p.name.endswith(".nii") or p.name.endswith(".nii.gz")


def _stem(p: Path) -> str:
    return p.name[: -len(".nii.gz")] if p.name.endswith(".nii.gz") else p.stem


def _to_canonical(x: np.ndarray, preset: Preset) -> np.ndarray:
    it = preset.intensity
    x = np.clip(x, it.lo, it.hi)
    return ((x - it.lo) / (it.hi - it.lo) * 2.0 - 1.0).astype(np.float32)


# ----------------------------------------------------------------------------- chest


NO_FINDING = "No Finding"


def _chest_discover(root: Path, options: dict, limit: int | None) -> list[Case]:
    if options.get("labels") == "csv":
        return _chest_discover_finding(root, options, limit)
    pngs = sorted(p for p in root.rglob("*") if p.suffix.lower() == ".png" and p.is_file())
    if not pngs:
        raise InputError("no PNG files found (chest expects a folder of x-ray PNGs)", str(root))
    by_name = {p.name: p for p in pngs}
    csv_path = next(iter(sorted(root.rglob("Data_Entry_2017*.csv"))), None)
    chosen: list[tuple[Path, str]] = []
    if csv_path is not None:
        with open(csv_path, newline="") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames is None or "Image Index" not in reader.fieldnames:
                raise InputError(
                    "CSV lacks the 'Image Index' column of Data_Entry_2017.csv", str(csv_path)
                )
            for row in reader:
                p = by_name.get(row["Image Index"])
                if p is not None:
                    pid = (row.get("Patient ID") or "").strip() or p.stem.split("_")[0]
                    chosen.append((p, pid))
        if not chosen:
            raise InputError(
                "none of the images listed in the CSV were found under the folder", str(csv_path)
            )
    else:
        chosen = [(p, p.stem.split("_")[0]) for p in pngs]
    if limit is not None:
        chosen = chosen[:limit]
    groups: dict[str, list[Path]] = {}
    for p, pid in chosen:
        groups.setdefault(pid, []).append(p)
    extra = {"csv": [csv_path]} if csv_path is not None else {}
    cases = [Case(pid, {"image": files}, "PNG") for pid, files in groups.items()]
    if extra and cases:
        cases[0].files.update(extra)  # hashed with the inputs: a changed CSV changes the selection
    return cases


def _chest_discover_finding(root: Path, options: dict, limit: int | None) -> list[Case]:
    """ChestX-ray14 with ``Finding Labels``: NAME (class 1) vs ``No Finding`` (class 0)."""
    finding = str(options.get("label_finding") or "").strip()
    if not finding:
        raise UsageError("labels from the CSV need a finding name (--label-finding, e.g. Pneumonia)")
    if finding == NO_FINDING:
        raise UsageError(f"--label-finding names the positive class; {NO_FINDING!r} is the negative")
    csv_path = next(iter(sorted(root.rglob("Data_Entry_2017*.csv"))), None)
    if csv_path is None:
        raise InputError(
            "--label-finding needs ChestX-ray14's Data_Entry_2017.csv (with 'Finding Labels') "
            "under the folder",
            str(root),
        )
    by_name = {p.name: p for p in root.rglob("*") if p.suffix.lower() == ".png" and p.is_file()}
    chosen: dict[int, list[tuple[Path, str]]] = {0: [], 1: []}
    seen: set[str] = set()
    with open(csv_path, newline="") as fh:
        reader = csv.DictReader(fh)
        cols = reader.fieldnames or []
        for col in ("Image Index", "Finding Labels"):
            if col not in cols:
                raise InputError(f"CSV lacks the {col!r} column of Data_Entry_2017.csv", str(csv_path))
        for row in reader:
            found = {f.strip() for f in (row["Finding Labels"] or "").split("|") if f.strip()}
            seen |= found
            k = 1 if finding in found else 0 if found == {NO_FINDING} else None
            p = by_name.get(row["Image Index"])
            if k is None or p is None or (limit is not None and len(chosen[k]) >= limit):
                continue
            pid = (row.get("Patient ID") or "").strip() or p.stem.split("_")[0]
            chosen[k].append((p, pid))
    if finding not in seen:
        known = ", ".join(sorted(seen - {NO_FINDING})) or "none"
        raise InputError(f"no row lists the finding {finding!r}; findings in the CSV: {known}",
                         str(csv_path))
    for k, name in ((1, finding), (0, NO_FINDING)):
        if not chosen[k]:
            raise InputError(f"no image of class {name!r} was found under the folder", str(root))
    groups: dict[str, tuple[list[Path], list[int]]] = {}
    for k in (0, 1):
        for p, pid in chosen[k]:
            files, labels = groups.setdefault(pid, ([], []))
            files.append(p)
            labels.append(k)
    cases = [Case(pid, {"image": f}, "PNG", {"labels": lab}) for pid, (f, lab) in groups.items()]
    cases[0].files["csv"] = [csv_path]
    return cases


def _read_png(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, dtype=np.float64)
                top = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
                return (arr / top * 255.0).astype(np.float32)
            if mode in ("L", "P", "1"):
                return np.asarray(im.convert("L"), dtype=np.float32)
            if mode in ("LA",):
                return np.asarray(im, dtype=np.float32)[..., 0]
            return np.asarray(im.convert("L"), dtype=np.float32)  # RGB(A): ITU-R 601 luminance
    except FileNotFoundError:
        raise InputError("file not found", str(path)) from None
    except Exception as exc:
        raise InputError(f"cannot read as PNG ({type(exc).__name__}: {exc})", str(path)) from None


def _chest_load(preset: Preset, case: Case, size: int, options: dict) -> CaseSlices:
    out, srcs = [], []
    for p in case.files["image"]:
        img = _read_png(p)
        out.append(_to_canonical(resize_stack(img[None], size), preset)[0])
        srcs.append(f"{case.patient}:{p.name}")
    labels = case.detail.get("labels")
    return CaseSlices(case.patient, np.stack(out), srcs,
                      None if labels is None else np.asarray(labels, dtype=np.int64))


# ----------------------------------------------------------------------------- heart

_FRAME = re.compile(r"_frame(\d+)\.nii(\.gz)?$")


def parse_frames(spec: str | None) -> str | list[int]:
    """``ed_es`` (the 3-D frame files), ``all`` (every cine frame) or ``0,5,10`` (cine frames)."""
    if spec is None or spec == "ed_es":
        return "ed_es"
    if spec == "all":
        return "all"
    try:
        frames = [int(t) for t in spec.split(",") if t.strip() != ""]
    except ValueError:
        raise UsageError(
            f"--frames must be ed_es, all, or comma-separated frame numbers, got {spec!r}"
        ) from None
    if not frames:
        raise UsageError("--frames lists no frame")
    return frames


def _heart_discover(root: Path, options: dict, limit: int | None) -> list[Case]:
    frames = parse_frames(options.get("frames"))
    folders: dict[Path, dict[str, list[Path]]] = {}
    for p in sorted(root.rglob("*.nii*")):
        if not _nifti(p) or _stem(p).endswith("_gt"):
            continue
        if _FRAME.search(p.name):
            folders.setdefault(p.parent, {"frame": [], "cine": []})["frame"].append(p)
        elif _stem(p).endswith("_4d"):
            folders.setdefault(p.parent, {"frame": [], "cine": []})["cine"].append(p)
    if not folders:
        raise InputError(
            "no ACDC-style NIfTI found (patientNNN_frameNN.nii.gz or patientNNN_4d.nii.gz)",
            str(root),
        )
    cases = []
    for folder, found in sorted(folders.items()):
        if frames == "ed_es":
            if not found["frame"]:
                raise InputError(
                    "no patientNNN_frameNN.nii.gz here; use --frames all or a list for the 4-D cine",
                    str(folder),
                )
            cases.append(Case(folder.name, {"image": found["frame"]}, "NIfTI"))
        else:
            if len(found["cine"]) != 1:
                raise InputError(
                    f"expected one *_4d.nii.gz cine file, found {len(found['cine'])}", str(folder)
                )
            cases.append(Case(folder.name, {"image": found["cine"]}, "NIfTI", {"frames": frames}))
    return cases


def _heart_scan(preset: Preset, vol: Volume, size: int) -> np.ndarray:
    data = resample(vol.data, vol.spacing, preset.spacing)
    lo, hi = float(data.min()), float(data.max())
    norm = (data - lo) / (hi - lo) if hi > lo else np.zeros_like(data)
    padded = pad_crop(norm.astype(np.float32), preset.canvas, preset.intensity.background)
    return resize_stack(padded, size) * 2.0 - 1.0


def _heart_load(preset: Preset, case: Case, size: int, options: dict) -> CaseSlices:
    out, srcs = [], []
    for p in case.files["image"]:
        if case.detail.get("frames") is None:
            vol, _ = load_nifti(p, reorient=False)
            scans = [(vol, _stem(p))]
        else:
            shape = nifti_shape(p)
            count = shape[3] if len(shape) == 4 else 1
            wanted = range(count) if case.detail["frames"] == "all" else case.detail["frames"]
            scans = []
            for t in wanted:
                if not 0 <= t < count:
                    raise InputError(
                        f"frame {t} requested but the cine has frames 0..{count - 1}", str(p)
                    )
                scans.append((load_nifti(p, reorient=False, frame=t)[0], f"{_stem(p)}#t{t}"))
        for vol, name in scans:
            sl = _heart_scan(preset, vol, size)
            out.append(sl)
            srcs += [f"{case.patient}:{name}#z{k}" for k in range(len(sl))]
    return CaseSlices(case.patient, np.concatenate(out), srcs)


# ----------------------------------------------------------------------------- CT (pelvic, abdomen)

_MASK = re.compile(r"(mask|label|seg)", re.IGNORECASE)


def _pelvic_discover(root: Path, options: dict, limit: int | None) -> list[Case]:
    cases = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        masks = [
            p for p in files if _MASK.search(p.name) and (_nifti(p) or p.suffix in (".npy", ".npz"))
        ]
        if len(masks) > 1:
            raise InputError(
                f"several label maps ({', '.join(m.name for m in masks)}); keep one", str(folder)
            )
        niftis = [p for p in files if _nifti(p) and p not in masks]
        dicoms = [p for p in files if p not in masks and not _nifti(p) and is_dicom(p)]
        if not niftis and not dicoms:
            continue
        if not masks:
            raise InputError(
                "no organ label map (a file named *mask*, *label* or *seg*): pelvic slices are "
                "selected by organ labels",
                str(folder),
            )
        if niftis and dicoms:
            raise InputError(
                "both NIfTI and DICOM images; keep one CT per patient folder", str(folder)
            )
        if len(niftis) > 1:
            raise InputError(
                f"several NIfTI images ({', '.join(p.name for p in niftis)}); keep one", str(folder)
            )
        fmt = "NIfTI" if niftis else "DICOM"
        cases.append(Case(folder.name, {"image": niftis or dicoms, "label": masks}, fmt))
    if not cases:
        raise InputError("no patient folders with a CT (DICOM or NIfTI) found", str(root))
    return cases


_DIGITS = re.compile(r"(\d+)")


def _abdomen_discover(root: Path, options: dict, limit: int | None) -> list[Case]:
    imgs = sorted(p for p in root.rglob("img*.nii*") if _nifti(p))
    if not imgs:
        raise InputError("no BTCV-style img*.nii.gz found", str(root))
    labels = {}
    for p in root.rglob("label*.nii*"):
        m = _DIGITS.search(_stem(p))
        if _nifti(p) and m:
            labels[m.group(1)] = p
    cases = []
    for p in imgs:
        m = _DIGITS.search(_stem(p))
        key = m.group(1) if m else None
        if key is None or key not in labels:
            raise InputError(f"no matching label{key or ''}.nii.gz for this image", str(p))
        cases.append(Case(_stem(p), {"image": [p], "label": [labels[key]]}, "NIfTI"))
    return cases


def _ct_volumes(case: Case) -> tuple[Volume, Volume]:
    lab_path = case.files["label"][0]
    if case.fmt == "NIfTI":
        img_path = case.files["image"][0]
        ishape, lshape = nifti_shape(img_path)[:3], nifti_shape(lab_path)[:3]
        if ishape != lshape:
            raise InputError(
                f"label map shape {lshape} differs from its image {img_path.name} {ishape}",
                str(lab_path),
            )
        vol, affine = load_nifti(img_path, reorient=True)
        lab, _ = load_nifti(lab_path, reorient=True, label=True, like_affine=affine)
        return vol, lab
    vol, affine = load_dicom_series(case.files["image"], str(case.files["image"][0].parent))
    voxel_shape = (vol.data.shape[2], vol.data.shape[1], vol.data.shape[0])
    if _nifti(lab_path):
        lshape = nifti_shape(lab_path)[:3]
        if tuple(lshape) != voxel_shape:
            raise InputError(
                f"label map shape {lshape} differs from the DICOM series {voxel_shape} (cols, rows, "
                "slices)",
                str(lab_path),
            )
        lab, _ = load_nifti(lab_path, reorient=True, label=True, like_affine=affine)
    else:
        lab = load_mask_array(lab_path, affine, voxel_shape)
    return vol, lab


def _ct_load(preset: Preset, case: Case, size: int, options: dict) -> CaseSlices:
    vol, lab = _ct_volumes(case)
    data = resample(vol.data, vol.spacing, preset.spacing)
    labels = resample(lab.data, lab.spacing, preset.spacing, labels=True)
    keep = np.flatnonzero(np.isin(labels, preset.selection_labels).any(axis=(1, 2)))
    if keep.size == 0:
        return CaseSlices(case.patient, np.zeros((0, size, size), np.float32), [])
    canon = _to_canonical(data[keep], preset)
    padded = pad_crop(canon, preset.canvas, -1.0)  # -1 canonical == -1024 HU (air)
    return CaseSlices(
        case.patient, resize_stack(padded, size), [f"{case.patient}:z{k}" for k in keep]
    )


DISCOVER = {
    "chest": _chest_discover,
    "heart": _heart_discover,
    "pelvic": _pelvic_discover,
    "abdomen": _abdomen_discover,
}
LOAD = {"chest": _chest_load, "heart": _heart_load, "pelvic": _ct_load, "abdomen": _ct_load}


def discover(preset: Preset, root: Path, options: dict, limit: int | None) -> list[Case]:
    if not root.exists():
        raise InputError("data folder not found", str(root))
    if not root.is_dir():
        raise InputError("not a folder", str(root))
    return DISCOVER[preset.name](root, options, limit)


def load_case(preset: Preset, case: Case, size: int, options: dict) -> CaseSlices:
    got = LOAD[preset.name](preset, case, size, options)
    if got.labels is None and "class" in case.detail:
        got.labels = np.full(len(got.images), int(case.detail["class"]), dtype=np.int64)
    return got


LABEL_MODES = ("folders", "csv")
NEGATIVE_NAMES = frozenset({"normal", "no finding", "healthy", "negative", "control", "controls"})


def discover_labelled(
    preset: Preset, root: Path, options: dict, limit: int | None
) -> tuple[list[Case], list[str]]:
    """Cases with class labels and the class names (index = label), per ``options["labels"]``."""
    mode = options.get("labels")
    if mode == "csv":
        if preset.name != "chest":
            raise UsageError(
                f"--label-finding reads ChestX-ray14's CSV (chest); for {preset.name} use "
                "--labels folders (DIR/<class>/...)"
            )
        cases = discover(preset, root, options, limit)
        return cases, [NO_FINDING, str(options["label_finding"]).strip()]
    if mode != "folders":
        raise UsageError(f"unknown label source {mode!r}; choose one of {', '.join(LABEL_MODES)}")
    if not root.is_dir():
        raise InputError("data folder not found", str(root))
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    # A folder named like "normal" is class 0, so that with two classes the other one -- the
    # finding -- is the positive class of sensitivity and specificity.
    folders.sort(key=lambda p: p.name.strip().lower().replace("_", " ") not in NEGATIVE_NAMES)
    if len(folders) < 2:
        names = ", ".join(p.name for p in folders) or "none"
        raise InputError(
            f"--labels folders needs one sub-folder per class (at least two), found {len(folders)} "
            f"({names})",
            str(root),
        )
    cases: list[Case] = []
    for k, folder in enumerate(folders):
        found = discover(preset, folder, options, limit)
        for c in found:
            c.detail["class"] = k
        cases += found
    return cases, [p.name for p in folders]
