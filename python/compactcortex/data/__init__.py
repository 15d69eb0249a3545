"""Data: image files (and, later, recordings, NWB import and the digital population)."""
from .image_files import read_images

__all__ = ["read_images"]
