"""A continuous-time recurrent network with a linear readout.

With ``alpha = dt / tau``, the unit currents ``x`` and rates ``r = f(x)``
evolve as (Euler step of ``tau dx/dt = -x + W r + W_in u + b + noise``)::

    x[t] = (1 - alpha) x[t-1]
           + alpha (W_eff r[t-1] + W_in (u[t] + s_in xi_in[t]) + b)
           + sqrt(alpha) s_rec xi_rec[t]
    r[t] = f(x[t])
    y[t] = W_out r[t] + b_out

``W_eff = W * mask``: the optional 0/1 recurrent mask is applied at every step
(and so keeps pruned weights at zero through training). ``W[i, j]`` is the
weight from unit ``j`` onto unit ``i``. The initial current ``x[-1]`` is a
learned vector shared by all trials.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from neurozoo.errors import NeurozooError
from neurozoo.headdir.config import NONLINEARITIES, ModelConfig

__all__ = ["HeadDirRNN", "nonlinearity", "random_mask", "load_mask"]


def _rectified_tanh(x: torch.Tensor) -> torch.Tensor:
    return torch.relu(torch.tanh(x))


_F = {
    "rectified_tanh": _rectified_tanh,
    "tanh": torch.tanh,
    "relu": torch.relu,
    "softplus": nn.functional.softplus,
}


def nonlinearity(name: str):
    """The rate function of a given name.

    Parameters
    ----------
    name : str
        One of :data:`neurozoo.headdir.config.NONLINEARITIES`.

    Returns
    -------
    callable
        Elementwise ``torch.Tensor -> torch.Tensor``.
    """
    if name not in _F:
        raise NeurozooError(
            f"model.nonlinearity: must be one of {', '.join(NONLINEARITIES)}, "
            f"got {name!r}"
        )
    return _F[name]


def random_mask(n_units: int, sparsity: float, seed: int) -> torch.Tensor:
    """A seeded random 0/1 recurrent mask.

    Parameters
    ----------
    n_units : int
        Network size.
    sparsity : float
        Share of connections removed, in ``[0, 1)``: exactly
        ``round(sparsity * n_units**2)`` entries are zero.
    seed : int
        Seed of the draw.

    Returns
    -------
    torch.Tensor
        ``(n_units, n_units)`` float32 mask.
    """
    n = n_units * n_units
    n_off = round(sparsity * n)
    g = torch.Generator().manual_seed(int(seed))
    flat = torch.ones(n)
    flat[torch.randperm(n, generator=g)[:n_off]] = 0.0
    return flat.reshape(n_units, n_units)


def load_mask(path: str | Path, n_units: int) -> torch.Tensor:
    """Read a 0/1 recurrent mask from a ``.npy`` or ``.pt`` file.

    Parameters
    ----------
    path : str or Path
        The file.
    n_units : int
        Expected size.

    Returns
    -------
    torch.Tensor
        ``(n_units, n_units)`` float32 mask.
    """
    path = Path(path)
    if not path.is_file():
        raise NeurozooError(f"model.mask_path: file {path} not found")
    if path.suffix == ".npy":
        mask = torch.from_numpy(np.load(path))
    elif path.suffix in (".pt", ".pth"):
        mask = torch.load(path, map_location="cpu", weights_only=True)
    else:
        raise NeurozooError(f"model.mask_path: expected a .npy or .pt file, got {path}")
    return _check_mask(mask, n_units, f"model.mask_path ({path})")


def _check_mask(mask, n_units: int, name: str) -> torch.Tensor:
    mask = torch.as_tensor(mask)
    if tuple(mask.shape) != (n_units, n_units):
        raise NeurozooError(
            f"{name}: expected shape ({n_units}, {n_units}), got {tuple(mask.shape)}"
        )
    mask = mask.to(torch.float32)
    if not torch.all((mask == 0) | (mask == 1)):
        raise NeurozooError(f"{name}: entries must be 0 or 1 (or boolean)")
    return mask


class HeadDirRNN(nn.Module):
    """Continuous-time RNN mapping velocity and cue inputs to ``(sin, cos)``.

    Parameters
    ----------
    config : ModelConfig
        Size, time constants, nonlinearity, noise, sparsity.
    n_inputs : int
        Input channels (3 for the head-direction task).
    n_outputs : int
        Readout channels (2: sine and cosine of heading).
    seed : int
        Seed of the initialisation and of the random mask.
    mask : array_like or None
        ``(n_units, n_units)`` 0/1 recurrent mask; overrides
        ``config.mask_path`` and ``config.sparsity``.

    Attributes
    ----------
    w_rec : torch.nn.Parameter
        ``(n_units, n_units)`` recurrent weights (before masking).
    w_in : torch.nn.Parameter
        ``(n_units, n_inputs)`` input weights.
    bias : torch.nn.Parameter
        ``(n_units,)`` unit bias.
    x0 : torch.nn.Parameter
        ``(n_units,)`` initial current.
    readout : torch.nn.Linear
        ``n_units -> n_outputs``.
    mask : torch.Tensor
        ``(n_units, n_units)`` buffer of 0/1 entries.
    """

    def __init__(
        self,
        config: ModelConfig,
        n_inputs: int = 3,
        n_outputs: int = 2,
        seed: int = 0,
        mask=None,
    ) -> None:
        super().__init__()
        self.config = config
        n = config.n_units
        self.alpha = config.alpha
        self.f = nonlinearity(config.nonlinearity)
        g = torch.Generator().manual_seed(int(seed))
        w = torch.randn(n, n, generator=g) * (config.init_gain / math.sqrt(n))
        self.w_rec = nn.Parameter(w)
        self.w_in = nn.Parameter(
            torch.randn(n, n_inputs, generator=g) / math.sqrt(n_inputs)
        )
        self.bias = nn.Parameter(torch.zeros(n))
        self.x0 = nn.Parameter(torch.zeros(n))
        self.readout = nn.Linear(n, n_outputs)
        with torch.no_grad():
            bound = 1.0 / math.sqrt(n)
            self.readout.weight.copy_(
                (torch.rand(n_outputs, n, generator=g) * 2 - 1) * bound
            )
            self.readout.bias.zero_()
        if mask is not None:
            m = _check_mask(mask, n, "mask")
        elif config.mask_path is not None:
            m = load_mask(config.mask_path, n)
        elif config.sparsity > 0:
            m = random_mask(n, config.sparsity, seed + 1)
        else:
            m = torch.ones(n, n)
        self.register_buffer("mask", m)
        self.noise = True

    @property
    def n_units(self) -> int:
        """Number of recurrent units."""
        return self.w_rec.shape[0]

    def effective_weights(self) -> torch.Tensor:
        """The masked recurrent weights ``W * mask``, ``(n_units, n_units)``."""
        return self.w_rec * self.mask

    def forward(
        self,
        inputs: torch.Tensor,
        generator: torch.Generator | None = None,
        noise: bool | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the network over a batch of trials.

        Parameters
        ----------
        inputs : torch.Tensor
            ``(n_trials, n_steps, n_inputs)``.
        generator : torch.Generator or None
            Source of the noise (on the inputs' device), for reproducibility.
        noise : bool or None
            Whether to add the configured noise; defaults to ``self.noise``.

        Returns
        -------
        outputs : torch.Tensor
            ``(n_trials, n_steps, n_outputs)`` readout.
        rates : torch.Tensor
            ``(n_trials, n_steps, n_units)`` firing rates.
        """
        if inputs.ndim != 3 or inputs.shape[-1] != self.w_in.shape[1]:
            raise NeurozooError(
                f"inputs: expected shape (n_trials, n_steps, {self.w_in.shape[1]}), "
                f"got {tuple(inputs.shape)}"
            )
        noise = self.noise if noise is None else noise
        n_trials, n_steps, _ = inputs.shape
        dev = inputs.device
        a = self.alpha
        s_in = self.config.input_noise if noise else 0.0
        s_rec = self.config.rec_noise * math.sqrt(a) if noise else 0.0
        u = inputs
        if s_in > 0:
            u = u + s_in * torch.randn(
                u.shape, generator=generator, device=dev, dtype=u.dtype
            )
        drive = u @ self.w_in.T + self.bias  # (n_trials, n_steps, n_units)
        if s_rec > 0:
            rec_noise = s_rec * torch.randn(
                (n_trials, n_steps, self.n_units),
                generator=generator,
                device=dev,
                dtype=u.dtype,
            )
        w_t = self.effective_weights().T
        x = self.x0.expand(n_trials, -1)
        r = self.f(x)
        rates = []
        external = a * drive
        if s_rec > 0:
            external = external + rec_noise
        # unbind (not drive[:, t]) keeps the backward pass linear in n_steps
        for ext_t in external.unbind(dim=1):
            x = (1 - a) * x + a * (r @ w_t) + ext_t
            r = self.f(x)
            rates.append(r)
        rates_t = torch.stack(rates, dim=1)
        return self.readout(rates_t), rates_t
