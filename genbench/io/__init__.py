"""Reading and writing image sets (PNG/TIFF 8/16-bit, NPY/NPZ, DICOM, NIfTI) and atomic writes.

Heavy imports (pydicom, nibabel, tifffile) happen only when a file of that format is read.
"""

from genbench.io.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from genbench.io.decoded import ImageConversionWarning, ReadOptions
from genbench.io.readers import (
    IMAGE_EXTENSIONS,
    list_files,
    read_image_file,
    read_image_folder,
    resize_image,
)
from genbench.io.writers import quantize_uint16, write_npz, write_png_folder

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageConversionWarning",
    "ReadOptions",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "list_files",
    "quantize_uint16",
    "read_image_file",
    "read_image_folder",
    "resize_image",
    "write_npz",
    "write_png_folder",
]
