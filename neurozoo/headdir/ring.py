"""A hand-built ring network with planted compass and shifter populations.

It is the ground truth for the analysis: :func:`build_ring_network` returns a
:class:`~neurozoo.headdir.model.HeadDirRNN` whose units are, by
construction,

- ``compass``: driven by ``g cos(heading - phi)``, no velocity input;
- ``left_shifter`` / ``right_shifter``: the same heading drive plus
  ``+k v`` / ``-k v``, minus a threshold, so they fire only while turning
  left / right;
- ``other``: driven by velocity only (no heading tuning);
- ``silent``: a strongly negative bias and no input.

Recurrent weights follow the ring-attractor layout of the fly's compass:
compass onto compass ``(J_E cos(d) - J_I) / n`` (local excitation, broad
inhibition, ``d`` the offset receiver minus sender), left shifters onto
compass ``(J_S cos(d - delta) - J_I) / n`` and right shifters
``(J_S cos(d + delta) - J_I) / n`` (shifted offsets), compass onto shifters
``J_E cos(d) / n``.

To isolate the analysis from velocity integration, the network is driven by
the current heading itself: :func:`heading_driven_trials` puts
``(sin h[t], cos h[t])`` on the cue inputs at every step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from neurozoo.headdir.config import ModelConfig, TaskConfig
from neurozoo.headdir.model import HeadDirRNN
from neurozoo.headdir.task import Trials, generate_trials

__all__ = ["RingNetwork", "build_ring_network", "heading_driven_trials"]


@dataclass
class RingNetwork:
    """A planted ring network and its ground truth.

    Attributes
    ----------
    model : HeadDirRNN
        The network (3 inputs: velocity, sine and cosine of heading).
    labels : numpy.ndarray
        ``(n_units,)`` planted class of each unit.
    preferred : numpy.ndarray
        ``(n_units,)`` planted preferred heading, radians (NaN for ``other``
        and ``silent``).
    shift : float
        Planted offset ``delta`` of the shifter projections, radians.
    """

    model: HeadDirRNN
    labels: np.ndarray
    preferred: np.ndarray
    shift: float


def build_ring_network(
    n_compass: int = 32,
    n_shifter: int = 16,
    n_other: int = 6,
    n_silent: int = 6,
    velocity_std: float = 0.05,
    shift_deg: float = 45.0,
    heading_gain: float = 1.5,
    j_exc: float = 1.0,
    j_inh: float = 0.5,
    j_shift: float = 1.0,
    seed: int = 0,
) -> RingNetwork:
    """Build the planted network (see the module docstring).

    Parameters
    ----------
    n_compass : int
        Compass units, preferred headings evenly spaced (randomly rotated).
    n_shifter : int
        Units in each of the left and right shifter populations.
    n_other : int
        Velocity-only units.
    n_silent : int
        Silent units.
    velocity_std : float
        Velocity scale (radians per step) the velocity weights are set for.
    shift_deg : float
        Offset ``delta`` of the shifter projections, degrees.
    heading_gain : float
        Gain ``g`` of the heading drive.
    j_exc, j_inh, j_shift : float
        Ring excitation, uniform inhibition, shifter projection strength.
    seed : int
        Seed of the ring's rotation and of the order of the units.

    Returns
    -------
    RingNetwork
    """
    rng = np.random.default_rng(seed)
    rot = rng.uniform(-np.pi, np.pi)

    def ring(n: int) -> np.ndarray:
        return (np.arange(n) * 2 * np.pi / n + rot + np.pi) % (2 * np.pi) - np.pi

    labels = np.array(
        ["compass"] * n_compass
        + ["left_shifter"] * n_shifter
        + ["right_shifter"] * n_shifter
        + ["other"] * n_other
        + ["silent"] * n_silent
    )
    pref = np.concatenate(
        [
            ring(n_compass),
            ring(n_shifter),
            ring(n_shifter),
            np.full(n_other + n_silent, np.nan),
        ]
    )
    perm = rng.permutation(len(labels))
    labels, pref = labels[perm], pref[perm]
    n = len(labels)
    k = 2.0 / velocity_std
    w_in = np.zeros((n, 3))
    bias = np.zeros(n)
    w = np.zeros((n, n))
    delta = np.deg2rad(shift_deg)
    is_c = labels == "compass"
    for i in range(n):
        lab = labels[i]
        if lab in ("compass", "left_shifter", "right_shifter"):
            w_in[i, 1] = heading_gain * np.sin(pref[i])
            w_in[i, 2] = heading_gain * np.cos(pref[i])
        if lab == "left_shifter":
            w_in[i, 0], bias[i] = k, -heading_gain
        elif lab == "right_shifter":
            w_in[i, 0], bias[i] = -k, -heading_gain
        elif lab == "other":
            w_in[i, 0], bias[i] = 0.5 * k, 0.5
        elif lab == "silent":
            bias[i] = -5.0
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            d = pref[i] - pref[j]
            if labels[i] == "compass" and labels[j] == "compass":
                w[i, j] = (j_exc * np.cos(d) - j_inh) / n_compass
            elif labels[i] == "compass" and labels[j] == "left_shifter":
                w[i, j] = (j_shift * np.cos(d - delta) - j_inh) / n_shifter
            elif labels[i] == "compass" and labels[j] == "right_shifter":
                w[i, j] = (j_shift * np.cos(d + delta) - j_inh) / n_shifter
            elif labels[i] in ("left_shifter", "right_shifter") and is_c[j]:
                w[i, j] = j_exc * np.cos(d) / n_compass
    cfg = ModelConfig(n_units=n, dt=25.0, tau=50.0, rec_noise=0.0, input_noise=0.0)
    model = HeadDirRNN(cfg, seed=seed)
    with torch.no_grad():
        model.w_rec.copy_(torch.as_tensor(w, dtype=torch.float32))
        model.w_in.copy_(torch.as_tensor(w_in, dtype=torch.float32))
        model.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
        model.x0.zero_()
    model.eval()
    return RingNetwork(model, labels, pref, float(delta))


def heading_driven_trials(
    config: TaskConfig, n_trials: int, seed: int = 0, n_steps: int | None = None
) -> Trials:
    """Trials whose cue inputs show the current heading at every step.

    Parameters
    ----------
    config : TaskConfig
        Velocity statistics.
    n_trials : int
        Trials.
    seed : int
        Seed of the draw.
    n_steps : int or None
        Trial length (``config.n_steps`` if None).

    Returns
    -------
    Trials
        As :func:`~neurozoo.headdir.task.generate_trials`, with
        ``inputs[..., 1:]`` set to ``(sin, cos)`` of ``heading``.
    """
    trials = generate_trials(config, n_trials, seed, n_steps=n_steps)
    trials.inputs[..., 1] = np.sin(trials.heading)
    trials.inputs[..., 2] = np.cos(trials.heading)
    return trials
