"""Fixed facts of the published compact-model setup."""

#: Per-channel pixel mean (R, G, B) subtracted from images before the models see them.
DATASET_MEAN = (116.222, 109.270, 100.381)
#: Input images are IMAGE_SIZE x IMAGE_SIZE RGB.
IMAGE_SIZE = 112
#: Side of the feature maps of layers 2-4 (and of the readout's spatial grid).
MAP_SIZE = 28
#: Filters per layer of the published model of session 190923 neuron 0: the size every
#: "published-size" benchmark and random model uses.
PUBLISHED_FILTERS = (48, 60, 3, 3, 3)
