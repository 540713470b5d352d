"""Angular-velocity integration trials.

A trial gives the network, at every time step ``t``, three inputs: the angular
velocity ``v[t]`` (radians per step, positive = counter-clockwise = left
turn) and the heading cue ``(sin h0, cos h0)`` (non-zero only during the first
``cue_steps`` steps). The targets are ``(sin h[t], cos h[t])`` with
``h[t] = h0 + v[0] + ... + v[t]`` wrapped to ``[-pi, pi)``.

:func:`generate_trials` draws trials from a :class:`~neurozoo.headdir.config.
TaskConfig`; :func:`trials_from_velocity` builds them around a recorded or
user-supplied velocity trace.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurozoo.errors import NeurozooError
from neurozoo.headdir.config import TaskConfig

__all__ = ["Trials", "generate_trials", "trials_from_velocity", "wrap_angle"]


def wrap_angle(x: np.ndarray) -> np.ndarray:
    """Wrap angles (radians) to ``[-pi, pi)``.

    Parameters
    ----------
    x : array_like
        Angles of any shape.

    Returns
    -------
    numpy.ndarray
        Same shape, wrapped.
    """
    return (np.asarray(x) + np.pi) % (2 * np.pi) - np.pi


@dataclass
class Trials:
    """A batch of trials.

    Attributes
    ----------
    inputs : numpy.ndarray
        ``(n_trials, n_steps, 3)`` float32: velocity, cue sine, cue cosine.
    targets : numpy.ndarray
        ``(n_trials, n_steps, 2)`` float32: sine and cosine of heading.
    heading : numpy.ndarray
        ``(n_trials, n_steps)`` float64 heading in ``[-pi, pi)``.
    velocity : numpy.ndarray
        ``(n_trials, n_steps)`` float64 angular velocity, radians per step.
    cue_steps : int
        Steps at the start of each trial with the cue on.
    zero_mask : numpy.ndarray
        ``(n_trials, n_steps)`` bool, True inside a planted zero-velocity
        stretch.
    """

    inputs: np.ndarray
    targets: np.ndarray
    heading: np.ndarray
    velocity: np.ndarray
    cue_steps: int
    zero_mask: np.ndarray

    @property
    def n_trials(self) -> int:
        """Number of trials."""
        return self.inputs.shape[0]

    @property
    def n_steps(self) -> int:
        """Time steps per trial."""
        return self.inputs.shape[1]


def _assemble(
    velocity: np.ndarray, h0: np.ndarray, cue_steps: int, zero_mask: np.ndarray
) -> Trials:
    n_trials, n_steps = velocity.shape
    heading = wrap_angle(h0[:, None] + np.cumsum(velocity, axis=1))
    inputs = np.zeros((n_trials, n_steps, 3), dtype=np.float32)
    inputs[:, :, 0] = velocity
    inputs[:, :cue_steps, 1] = np.sin(h0)[:, None]
    inputs[:, :cue_steps, 2] = np.cos(h0)[:, None]
    targets = np.stack([np.sin(heading), np.cos(heading)], axis=-1).astype(np.float32)
    return Trials(inputs, targets, heading, velocity, cue_steps, zero_mask)


def generate_trials(
    config: TaskConfig,
    n_trials: int,
    rng: np.random.Generator | int | None = None,
    n_steps: int | None = None,
) -> Trials:
    """Draw trials from the task's velocity process.

    Parameters
    ----------
    config : TaskConfig
        Velocity statistics, cue length, zero-velocity stretches.
    n_trials : int
        Trials to draw (> 0).
    rng : numpy.random.Generator or int or None
        Random source, or a seed for one.
    n_steps : int or None
        Trial length; ``config.n_steps`` if None (use a larger value to test
        generalisation to longer trials). The zero stretch keeps the length
        set by the configuration.

    Returns
    -------
    Trials
    """
    if n_trials < 1:
        raise NeurozooError(f"n_trials: must be >= 1, got {n_trials}")
    n_steps = config.n_steps if n_steps is None else int(n_steps)
    if n_steps <= config.cue_steps:
        raise NeurozooError(
            f"n_steps: must be > task.cue_steps ({config.cue_steps}), got {n_steps}"
        )
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    a, sigma = config.ar_coef, config.noise_std
    free = n_steps - config.cue_steps
    eps = rng.standard_normal((n_trials, free))
    h0 = rng.uniform(-np.pi, np.pi, n_trials)
    has_zero = rng.random(n_trials) < config.zero_fraction
    length = min(config.zero_steps, free)
    starts = rng.integers(0, free - length + 1, n_trials)

    zero = np.zeros((n_trials, free), dtype=bool)
    for i in np.flatnonzero(has_zero):
        zero[i, starts[i] : starts[i] + length] = True
    v = np.zeros((n_trials, free))
    prev = eps[:, 0] * config.velocity_std  # stationary start
    for t in range(free):
        cur = a * prev + sigma * eps[:, t] if t > 0 else prev
        cur = np.where(zero[:, t], 0.0, cur)
        v[:, t] = cur
        prev = cur
    velocity = np.zeros((n_trials, n_steps))
    velocity[:, config.cue_steps :] = v
    zero_mask = np.zeros((n_trials, n_steps), dtype=bool)
    zero_mask[:, config.cue_steps :] = zero
    return _assemble(velocity, h0, config.cue_steps, zero_mask)


def trials_from_velocity(
    velocity: np.ndarray,
    initial_heading: np.ndarray | float = 0.0,
    cue_steps: int = 5,
    scale: float = 1.0,
) -> Trials:
    """Build trials around a recorded or user-supplied angular velocity.

    The cue period is prepended: the velocity trace starts after
    ``cue_steps`` steps of zero velocity with the heading cue on.

    Parameters
    ----------
    velocity : array_like
        ``(n_steps,)`` or ``(n_trials, n_steps)`` angular velocity.
    initial_heading : float or array_like
        Heading at the start, radians; scalar or ``(n_trials,)``.
    cue_steps : int
        Steps of cue before the trace (>= 1).
    scale : float
        Multiplier turning the trace's unit into radians per model step,
        e.g. ``np.deg2rad(1) * dt_seconds`` for a trace in degrees per second.

    Returns
    -------
    Trials
    """
    v = np.asarray(velocity, dtype=np.float64) * float(scale)
    if v.ndim == 1:
        v = v[None, :]
    if v.ndim != 2 or v.shape[1] < 1:
        raise NeurozooError(
            f"velocity: expected shape (n_steps,) or (n_trials, n_steps), got {v.shape}"
        )
    if not np.all(np.isfinite(v)):
        raise NeurozooError("velocity: contains NaN or infinite values")
    if int(cue_steps) < 1:
        raise NeurozooError(f"cue_steps: must be >= 1, got {cue_steps}")
    n_trials = v.shape[0]
    h0 = np.broadcast_to(np.asarray(initial_heading, dtype=np.float64), (n_trials,))
    full = np.concatenate([np.zeros((n_trials, cue_steps)), v], axis=1)
    zero_mask = np.zeros(full.shape, dtype=bool)
    return _assemble(full, wrap_angle(h0.copy()), int(cue_steps), zero_mask)
