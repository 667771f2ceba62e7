"""The four modality presets of the paper, as declarative specs.

A preset says what the paper did to its data set (target spacing, canvas, intensity mapping,
slice selection, where the files come from); ``genbench data show PRESET`` prints it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from genbench.errors import UsageError
from genbench.imageset import IntensityMapping

HU_WINDOW = (-1024.0, 3012.0)


@dataclass(frozen=True)
class Intensity:
    """How source values become canonical [-1, 1].

    ``kind``: ``window`` clips [lo, hi] (e.g. HU) and maps it linearly; ``minmax`` rescales each
    scan (one 3-D volume) from its own min..max onto [0, 1] first; ``fixed`` maps a known range
    (8-bit gray levels). ``background`` is the source value used for padding (air).
    """

    kind: str
    lo: float
    hi: float
    unit: str
    background: float

    def mapping(self) -> IntensityMapping:
        return IntensityMapping.from_range(self.lo, self.hi, self.unit)


@dataclass(frozen=True)
class Preset:
    name: str
    modality: str
    dataset: str
    source_format: str
    canvas: int  # the paper's pad/crop size before resizing to the requested size
    spacing: tuple[float | None, float | None, float | None] | None  # (slice, row, col) mm
    intensity: Intensity
    slice_selection: str
    selection_labels: tuple[int, ...]
    label_names: dict[int, str]
    max_images: int | None
    phantom_n: int
    layout: str
    notes: str = ""
    readers: tuple[str, ...] = field(default_factory=tuple)

    @property
    def mapping(self) -> IntensityMapping:
        return self.intensity.mapping()

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["label_names"] = {str(k): v for k, v in self.label_names.items()}
        d["mapping"] = self.mapping.as_dict()
        return d


PRESETS: dict[str, Preset] = {
    "chest": Preset(
        name="chest",
        modality="X-ray",
        dataset="NIH ChestX-ray14",
        source_format="PNG folder (8- or 16-bit), optional Data_Entry_2017.csv",
        canvas=256,
        spacing=None,
        intensity=Intensity("fixed", 0.0, 255.0, "gray level (8-bit)", 0.0),
        slice_selection="the first 5500 images (CSV order when Data_Entry_2017.csv is present, "
        "else sorted file names); no spacing resampling (x-rays carry no trustworthy spacing)",
        selection_labels=(),
        label_names={0: "background", 1: "lung_right", 2: "lung_left", 3: "heart", 4: "body"},
        max_images=5500,
        phantom_n=600,
        layout="DIR/**/*.png; patient id from the CSV's 'Patient ID' column, else the file-name "
        "prefix before '_' (00000001_000.png -> 00000001)",
        readers=("PIL",),
    ),
    "heart": Preset(
        name="heart",
        modality="MRI",
        dataset="ACDC (cine short-axis MRI)",
        source_format="NIfTI patient folders (3-D frames and 4-D cine)",
        canvas=256,
        spacing=(None, 2.0, 2.0),
        intensity=Intensity("minmax", 0.0, 1.0, "per-scan min-max normalised signal", 0.0),
        slice_selection="every slice along the third voxel axis (short axis) of each chosen frame",
        selection_labels=(),
        label_names={0: "background", 1: "right_ventricle", 2: "myocardium", 3: "left_ventricle"},
        max_images=None,
        phantom_n=600,
        layout="DIR/**/patientNNN/patientNNN_frameNN.nii.gz (ED/ES, default) and patientNNN_4d.nii.gz "
        "(cine: --frames all or --frames 0,5,10); *_gt.nii.gz files are labels",
        notes="in-plane resampling only; slice thickness is kept",
        readers=("nibabel",),
    ),
    "pelvic": Preset(
        name="pelvic",
        modality="CT",
        dataset="institutional pelvic CT with organ contours",
        source_format="DICOM series or NIfTI per patient, plus an organ label map",
        canvas=256,
        spacing=(2.0, 2.0, 2.0),
        intensity=Intensity("window", *HU_WINDOW, "HU", -1024.0),
        slice_selection="axial slices where any of bladder, prostate, rectum, femoral heads appears",
        selection_labels=(1, 2, 3, 4, 5),
        label_names={
            0: "background",
            1: "bladder",
            2: "prostate",
            3: "rectum",
            4: "femoral_head_left",
            5: "femoral_head_right",
        },
        max_images=None,
        phantom_n=600,
        layout="DIR/<patient>/ holding a CT (DICOM files, or one .nii/.nii.gz) and one label map whose "
        "name contains mask, label or seg (.nii/.nii.gz in the image's grid, or .npy/.npz in the sorted "
        "DICOM series' (slice, row, col) order); labels 1 bladder, 2 prostate, 3 rectum, 4/5 femoral heads",
        readers=("pydicom", "nibabel"),
    ),
    "abdomen": Preset(
        name="abdomen",
        modality="CT",
        dataset="BTCV (Multi-Atlas Labeling Beyond the Cranial Vault)",
        source_format="NIfTI img*.nii.gz with label*.nii.gz",
        canvas=256,
        spacing=(3.0, 1.52, 1.52),
        intensity=Intensity("window", *HU_WINDOW, "HU", -1024.0),
        slice_selection="axial slices with at least one of the 13 BTCV organ labels",
        selection_labels=tuple(range(1, 14)),
        label_names={
            0: "background",
            1: "spleen",
            2: "kidney_right",
            3: "kidney_left",
            4: "gallbladder",
            5: "esophagus",
            6: "liver",
            7: "stomach",
            8: "aorta",
            9: "inferior_vena_cava",
            10: "portal_and_splenic_vein",
            11: "pancreas",
            12: "adrenal_right",
            13: "adrenal_left",
        },
        max_images=None,
        phantom_n=600,
        layout="DIR/**/imgNNNN.nii.gz with DIR/**/labelNNNN.nii.gz (BTCV RawData/Training/{img,label})",
        readers=("nibabel",),
    ),
}


def get_preset(name: str) -> Preset:
    """The preset called ``name`` (chest, heart, pelvic, abdomen)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise UsageError(
            f"unknown dataset preset {name!r}; choose one of {', '.join(PRESETS)}"
        ) from None


# Where class labels (the utility experiment) come from, per preset. Kept out of ``Preset`` so
# that the data fingerprints (which hash ``Preset.as_dict()``) of existing runs do not change.
CLASS_LABELS: dict[str, str] = {
    "chest": "phantom: normal vs covid (bilateral, peripheral, lower-zone ground-glass opacities "
    "and consolidation; one class per synthetic patient); real: --labels folders "
    "(DIR/<class>/**/*.png, e.g. COVID/ and Normal/) or --label-finding NAME (Data_Entry_2017.csv's "
    "'Finding Labels': NAME vs 'No Finding', other images left out; the image cap applies per class)",
    "heart": "phantom: none; real: --labels folders (DIR/<class>/ each in the ACDC layout)",
    "pelvic": "phantom: none; real: --labels folders (DIR/<class>/<patient>/...)",
    "abdomen": "phantom: normal vs lesion (a hypodense liver lesion; a slice is 'lesion' when it "
    "cuts the lesion through at least half its radius); real: --labels folders "
    "(DIR/<class>/ each in the BTCV layout)",
}
