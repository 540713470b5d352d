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

import importlib

_LAZY = {
    "AnalysisConfig": "config",
    "HeadDirConfig": "config",
    "ModelConfig": "config",
    "TaskConfig": "config",
    "TrainConfig": "config",
    "load_config": "config",
    "preset": "config",
    "HeadDirRNN": "model",
    "Trials": "task",
    "generate_trials": "task",
    "trials_from_velocity": "task",
    "load_trained": "train",
    "train": "train",
}


def __getattr__(name: str):
    # Lazy so that ``neurozoo.headdir.cli`` (and the top-level CLI) can be
    # imported without importing torch.
    if name in _LAZY:
        module = importlib.import_module(f"neurozoo.headdir.{_LAZY[name]}")
        return getattr(module, name)
    raise AttributeError(f"module 'neurozoo.headdir' has no attribute {name!r}")


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
