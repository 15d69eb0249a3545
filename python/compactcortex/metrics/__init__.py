"""Accuracy metrics for models of neurons (numpy only; importing this never imports torch).

* :func:`noise_corrected_r2`: the r^2_ER estimator of Pospisil & Bair (2021), the
  "noise-corrected R2" of Cowley et al. (2026);
* :func:`fraction_explainable_variance`: the share of the repeat-averaged response variance
  that is not trial-to-trial noise;
* :func:`pearson_r` (:func:`pearson_r1` for one neuron) and :func:`raw_r2` (its square):
  uncorrected, for comparison.
"""
from __future__ import annotations

from .r2er import fraction_explainable_variance, noise_corrected_r2, pearson_r, pearson_r1, raw_r2

__all__ = ["fraction_explainable_variance", "noise_corrected_r2", "pearson_r", "pearson_r1", "raw_r2"]
