"""Data: recordings in the published layout, NWB import, image files, procedural images and the
embedded digital V4 population."""
from .digital import DigitalPopulation, digital_population, load_digital_population, save_digital_population
from .image_files import read_images
from .procedural import procedural
from .nwb import from_nwb
from .session import Session, list_sessions, load_session, save_session

__all__ = ["read_images", "from_nwb", "Session", "load_session", "save_session", "list_sessions", "procedural",
           "DigitalPopulation", "digital_population", "save_digital_population", "load_digital_population"]
