"""The trainer, under the names other code imports; each job has its own module in :mod:`crl.training`."""

from crl.training.agent import build_agent, resolve_device, set_torch_threads
from crl.training.callbacks import TrainingDiverged
from crl.training.console import Progress, StopSignals, TrainingInterrupted
from crl.training.loop import ContinualTrainer, block_steps
from crl.training.resume import upgrade_state

__all__ = [
    "ContinualTrainer", "Progress", "StopSignals", "TrainingDiverged", "TrainingInterrupted", "block_steps",
    "build_agent", "resolve_device", "set_torch_threads", "upgrade_state",
]
