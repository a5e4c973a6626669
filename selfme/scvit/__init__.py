"""SCViT (Sec. 3.3): a ViT classifying motions with the symmetric contrastive loss (Eq. 12-14), and its
leave-one-subject-out evaluation. Layers: regions (blocks) -> model -> weights -> factory -> train -> loso."""

from selfme.scvit.factory import SCViTConfig, create_scvit
from selfme.scvit.inputs import InputConfig, image_to_input, motion_to_input
from selfme.scvit.losses import SCViTLoss, symmetric_contrastive_loss
from selfme.scvit.folds import Fold, collect_predictions, loso_folds, read_fold_csv, seed_dir
from selfme.scvit.loso import FoldRun, LosoResult, run_loso
from selfme.scvit.model import SCViT
from selfme.scvit.regions import QUADRANTS, quadrant_masks, region_embeddings
from selfme.scvit.sources import Samples, build_inputs, combine_samples, load_samples
from selfme.scvit.train import LosoConfig
from selfme.scvit.weights import WeightsMismatch, WeightsNotFound

__all__ = ["Fold", "FoldRun", "InputConfig", "LosoConfig", "LosoResult", "QUADRANTS", "SCViT", "SCViTConfig",
           "SCViTLoss", "Samples", "WeightsMismatch", "WeightsNotFound", "build_inputs", "collect_predictions",
           "combine_samples", "create_scvit", "image_to_input", "load_samples", "loso_folds", "motion_to_input",
           "quadrant_masks", "read_fold_csv", "region_embeddings", "run_loso", "seed_dir",
           "symmetric_contrastive_loss"]
