"""Data: recordings in the published layout, image files (and, later, NWB import, procedural
images and the digital population)."""
from .image_files import read_images
from .session import Session, list_sessions, load_session, save_session

__all__ = ["read_images", "Session", "load_session", "save_session", "list_sessions"]
