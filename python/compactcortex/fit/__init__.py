"""Training: teachers, distillation into compact students, and fine-tuning after pruning."""
from .active import disagreement, select_images
from .distill import ImageStream, TargetPool, distill, distill_population, fine_tune
from .training import TrainConfig, train
from .teacher import fit_teacher, load_teacher, save_teacher
from .transfer import fit_transfer_teacher
from .trunk import TrunkConfig, fit_trunk

__all__ = ["TrainConfig", "train", "fit_trunk", "TrunkConfig", "fit_teacher", "fit_transfer_teacher", "save_teacher", "load_teacher", "distill", "distill_population",
           "fine_tune", "ImageStream", "TargetPool", "select_images", "disagreement"]
