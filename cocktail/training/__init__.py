"""GAN training: StyleGAN2's objective (loss.py), scheduled by one loop (loop.py) on 1 to N processes
(distributed.py), saved and resumed through checkpoint folders (checkpoint.py), set up by a config (config.py)."""

from .checkpoint import CHECKPOINTS_DIR, STATE_FILE, checked_checkpoint, latest_checkpoint
from .config import TrainingConfig, check_minibatch_groups, effective_ema_rampup
from .loop import TrainResult, train

__all__ = [
    "CHECKPOINTS_DIR",
    "STATE_FILE",
    "TrainResult",
    "TrainingConfig",
    "check_minibatch_groups",
    "checked_checkpoint",
    "effective_ema_rampup",
    "latest_checkpoint",
    "train",
]
