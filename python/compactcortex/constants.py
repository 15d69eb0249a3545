"""Fixed facts of the published compact-model setup."""

#: Per-channel pixel mean (R, G, B) subtracted from images before the models see them.
DATASET_MEAN = (116.222, 109.270, 100.381)
#: Input images are IMAGE_SIZE x IMAGE_SIZE RGB.
IMAGE_SIZE = 112
#: Side of the feature maps of layers 2-4 (and of the readout's spatial grid).
MAP_SIZE = 28
