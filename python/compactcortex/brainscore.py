"""Compact models as a Brain-Score ``BrainModel`` (extra ``[brainscore]``).

    from brainscore_vision import load_benchmark
    from compactcortex.brainscore import brain_model
    model = brain_model("../shared/data/v4", session=190923)     # 33 published models
    score = load_benchmark("Cowley2026.190923.V4-pls")(model)

``look_at`` reads each stimulus file, converts it to RGB (the published models' channel order;
the engine subtracts the dataset mean [116.222, 109.270, 100.381] in that order), resizes it to
112x112 and runs every model in one :class:`~compactcortex.PopulationPredictor` call: one
neuroid per compact model, in spike counts per 100 ms bin. The models see ``visual_degrees``
(default 11.2, the span of the Cowley et al. images, so that benchmark's stimuli reach them as
recorded; other benchmarks' stimuli are placed on that screen by Brain-Score itself).

brainscore-vision pins old numpy, pandas and xarray; it is an optional extra that never
constrains the core's dependencies.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from .data.image_files import decode_rgb

try:
    from brainscore_core.supported_data_standards.brainio.assemblies import NeuroidAssembly
    from brainscore_core.supported_data_standards.brainio.stimuli import StimulusSet
    from brainscore_vision.model_interface import BrainModel
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(f"compactcortex.brainscore needs brainscore-vision (pip install 'compactcortex[brainscore]'): {e}") from e

__all__ = ["brain_model", "CompactBrainModel", "VISUAL_DEGREES"]

#: Degrees of visual angle spanned by the 112x112 images the published models were fitted on.
VISUAL_DEGREES = 11.2
_CHUNK = 256  # images per engine call: bounds the decoded pixels held at once


class CompactBrainModel(BrainModel):
    """Compact models (one per neuron) behind Brain-Score's ``BrainModel`` interface.

    Build it with :func:`brain_model`. Only neural recording from V4 is supported: the models
    are static (every requested time bin gets the same response) and deterministic
    (``number_of_trials`` changes nothing).
    """

    def __init__(self, plans: Sequence[Any], neuroid_ids: Sequence[str], identifier: str,
                 visual_degrees: float, threads: int | None) -> None:
        from .engine.population import PopulationPredictor

        self._predictor = PopulationPredictor(plans, threads=threads)
        self._neuroid_ids = list(neuroid_ids)
        self._identifier = identifier
        self._visual_degrees = float(visual_degrees)
        self._time_bins: list[tuple[int, int]] | None = None

    @property
    def identifier(self) -> str:
        return self._identifier

    def visual_degrees(self) -> float:
        return self._visual_degrees

    def start_task(self, task: str, fitting_stimuli: Any = None) -> None:
        """Only passive fixation: the models record neurons, they perform no behavioural task."""
        if task != BrainModel.Task.passive:
            raise NotImplementedError(f"{self._identifier}: compact V4 models perform no task {task!r}; "
                                      "use start_recording('V4', ...)")
        self._time_bins = None

    def start_recording(self, recording_target: str, time_bins: Iterable[tuple[int, int]] | None = None) -> None:
        """Record ``recording_target`` (only ``"V4"``) in ``time_bins`` (ms; default [(70, 170)])."""
        if recording_target != BrainModel.RecordingTarget.V4:
            raise ValueError(f"{self._identifier}: compact models are models of V4 neurons; "
                             f"cannot record from {recording_target!r}")
        bins = [(70, 170)] if time_bins is None else [tuple(np.asarray(b).tolist()) for b in time_bins]
        for b in bins:
            if len(b) != 2 or not b[0] < b[1]:
                raise ValueError(f"time bins are (start, end) with start < end in ms, got {b!r}")
        self._time_bins = [(int(b[0]), int(b[1])) for b in bins]

    def look_at(self, stimuli: StimulusSet | Sequence[str | Path], number_of_trials: int = 1) -> NeuroidAssembly | None:
        """Responses (presentation x neuroid x time_bin) to a StimulusSet or a list of image files.

        Presentation coordinates are the StimulusSet's columns (``stimulus_id`` and
        ``stimulus_path`` for a list of files); neuroid coordinates ``neuroid_id`` and
        ``region``. Returns None during passive fixation.
        """
        if self._time_bins is None:
            return None
        if hasattr(stimuli, "get_stimulus"):  # a StimulusSet (brainio's, whichever copy)
            columns = {c: stimuli[c].values for c in stimuli.columns}
            paths = [stimuli.get_stimulus(sid) for sid in stimuli["stimulus_id"].values]
        else:
            paths = [str(p) for p in stimuli]
            columns = {"stimulus_id": np.asarray(paths, object), "stimulus_path": np.asarray(paths, object)}
        if not paths:
            raise ValueError("look_at: no stimuli")
        responses = np.empty((len(paths), len(self._neuroid_ids)), np.float32)
        for i in range(0, len(paths), _CHUNK):
            batch = np.stack([read_stimulus(p) for p in paths[i:i + _CHUNK]])
            self._predictor.predict(batch, out=responses[i:i + len(batch)])
        values = np.repeat(responses[:, :, None], len(self._time_bins), axis=2)
        coords = {name: ("presentation", v) for name, v in columns.items()}
        coords.update(neuroid_id=("neuroid", self._neuroid_ids), region=("neuroid", ["V4"] * len(self._neuroid_ids)),
                      time_bin_start=("time_bin", [b[0] for b in self._time_bins]),
                      time_bin_end=("time_bin", [b[1] for b in self._time_bins]))
        return NeuroidAssembly(values, coords=coords, dims=["presentation", "neuroid", "time_bin"])


def read_stimulus(path: str | Path) -> np.ndarray:
    """One stimulus file as (112, 112, 3) uint8 RGB (resized with Pillow's antialiased bilinear filter).

    Only a regular file is opened (a FIFO, device or socket is refused, not waited on); what is
    decoded and refused is :func:`compactcortex.data.image_files.decode_rgb`'s.
    """
    return decode_rgb(Path(path), str(path), resize=True)


def brain_model(models_or_root: str | Path | Sequence[Any], session: str | int | None = None, *,
                identifier: str | None = None, visual_degrees: float = VISUAL_DEGREES,
                threads: int | None = None) -> CompactBrainModel:
    """A Brain-Score BrainModel of compact models, one neuroid per model.

    Args:
        models_or_root: Plans, saved-Plan paths or CompactModels; or a data folder laid out
            like ``../shared/data/v4`` (published models, loaded with torch) with ``session``.
        session: the recorded session whose published models to load (with a folder).
        identifier: the model's Brain-Score identifier (default ``compactcortex-<session>``).
        visual_degrees: degrees of visual angle the 112x112 input spans.
        threads: engine threads (default: all CPUs available).

    Neuroid ids are ``<session>.<neuron>`` for published models, else ``neuron<k>``.
    """
    if not np.isfinite(visual_degrees) or visual_degrees <= 0:
        raise ValueError(f"visual_degrees must be a positive number, got {visual_degrees!r}")
    if isinstance(models_or_root, (str, Path)):
        if session is None:
            raise ValueError(f"{models_or_root}: a data folder needs session= (e.g. 190923)")
        from .models.published import load_published_session

        plans = load_published_session(models_or_root, session)
        ids = [f"{session}.{k}" for k in range(len(plans))]
    else:
        plans = list(models_or_root)
        if not plans:
            raise ValueError("brain_model needs at least one model")
        ids = [f"neuron{k}" for k in range(len(plans))]
    name = identifier or (f"compactcortex-{session}" if session is not None else "compactcortex")
    return CompactBrainModel(plans, ids, name, visual_degrees, threads)
