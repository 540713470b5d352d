"""Head direction: RNNs that integrate angular velocity (Cueva et al., 2020).

Train continuous-time RNNs to turn angular velocity into heading, then find
compass units (tuned to heading) and left/right shifter units (tuned to
heading and to the direction of turning) and the ring-shaped structure of
their connectivity. See ``docs/headdir.md``.

Submodules
----------
config
    Typed, validated configuration and the ``quick`` / ``paper`` presets.
task
    Angular-velocity trials (AR(1) velocity, heading cue, zero stretches).
model
    :class:`HeadDirRNN`, the continuous-time RNN with an optional recurrent
    mask.
train
    AdamW training with clipping, penalties and resumable checkpoints.
analysis
    Tuning curves, unit classes, sorted connectivity, offset profiles.
ring
    A hand-built ring network with planted compass and shifter populations.
pipeline, figures, cli
    The train / analyze / figures stages, their PNGs and command line.
"""

from neurozoo.headdir.config import (
    AnalysisConfig,
    HeadDirConfig,
    ModelConfig,
    TaskConfig,
    TrainConfig,
    load_config,
    preset,
)
from neurozoo.headdir.model import HeadDirRNN
from neurozoo.headdir.task import Trials, generate_trials, trials_from_velocity
from neurozoo.headdir.train import load_trained, train

__all__ = [
    "AnalysisConfig",
    "HeadDirConfig",
    "HeadDirRNN",
    "ModelConfig",
    "TaskConfig",
    "TrainConfig",
    "Trials",
    "generate_trials",
    "load_config",
    "load_trained",
    "preset",
    "train",
    "trials_from_velocity",
]
