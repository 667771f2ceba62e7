"""Modality presets (chest, heart, pelvic, abdomen), real-format loaders and built-in phantoms."""

from genbench.data.phantoms import generate_phantoms
from genbench.data.prepare import PreparedDataset, prepare_dataset, split_patients
from genbench.data.presets import PRESETS, Intensity, Preset, get_preset

__all__ = [
    "PRESETS",
    "Intensity",
    "PreparedDataset",
    "Preset",
    "generate_phantoms",
    "get_preset",
    "prepare_dataset",
    "split_patients",
]
