"""The engine's one exception for a bad image, raised by the C++ bindings (``csrc/common/
nb_inputs.hpp``) and the CUDA front end alike (torch-free, no compiled module needed)."""
from __future__ import annotations

__all__ = ["BadImageError", "MAX_INPUT"]

#: The largest magnitude of a recentred pixel value accepted (recentred pixels lie within +-255;
#: beyond this the network overflows float32, where ReLU can hide infinities behind a finite
#: output). As ``kMaxInput`` in ``csrc/common/model_types.hpp``.
MAX_INPUT = 1e6


class BadImageError(ValueError):
    """An image holds NaN, infinity or a value beyond +-:data:`MAX_INPUT`.

    ``index`` is the image's position in the call's batch (``LoopPredictor`` counts from the
    start of the whole pool it was given, not of its internal chunks).
    """

    def __init__(self, index: int) -> None:
        self.index = int(index)
        super().__init__(f"images: image {self.index} contains NaN or infinity, or a value beyond +-1e6 "
                         f"(recentred pixels lie within +-255)")

    def __reduce__(self):  # pickles (Ray, multiprocessing) with its index
        return (type(self), (self.index,))

    def shifted(self, offset: int) -> "BadImageError":
        """The same error for a batch that started ``offset`` images earlier."""
        return type(self)(self.index + offset)
