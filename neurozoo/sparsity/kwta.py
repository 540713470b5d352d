"""k-winners-take-all activations (Xiao et al., ICLR 2020; Ahmad & Scheinkman 2019).

:class:`KWinners` keeps, for every image, the ``k`` largest values of its
input over all units of the layer (channels and positions together) and sets
the others to zero; ``k = max(1, round(density * n_units))``. The kept values
pass unchanged, so a winner may be negative when fewer than ``k`` values are
positive; at density 1 the module passes everything (no nonlinearity).
:func:`replace_relus` swaps every ReLU module of a network for one,
which makes activation sparsity a variant of any trained or untrained model
(the ``kwta:DENSITY`` transform of the zoo).
"""

from __future__ import annotations

import torch
from torch import nn

from neurozoo.errors import NeurozooError

__all__ = ["KWinners", "replace_relus"]


class KWinners(nn.Module):
    """Keep the ``k`` largest values of each sample, zero the rest.

    Parameters
    ----------
    density : float
        Fraction of units kept, in ``(0, 1]``.

    Shape
    -----
    Input ``(n, ...)``; output of the same shape.
    """

    def __init__(self, density: float):
        super().__init__()
        if not 0.0 < float(density) <= 1.0:
            raise NeurozooError(f"k-WTA density must be in (0, 1], got {density}")
        self.density = float(density)

    def k(self, n_units: int) -> int:
        """Winners per sample for a layer of ``n_units`` units."""
        return max(1, int(round(self.density * n_units)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(x.shape[0], -1)
        k = self.k(flat.shape[1])
        if k >= flat.shape[1]:
            return x
        values, index = flat.topk(k, dim=1, sorted=False)
        out = torch.zeros_like(flat).scatter_(1, index, values)
        return out.view(x.shape)

    def extra_repr(self) -> str:
        return f"density={self.density}"


def replace_relus(model: nn.Module, density: float) -> int:
    """Replace every ``nn.ReLU`` and ``nn.ReLU6`` module of ``model`` in place.

    Returns
    -------
    int
        How many modules were replaced.

    A ReLU called as a function in a ``forward`` (``torch.relu``,
    ``F.relu``) is not a module and stays a ReLU.

    Raises
    ------
    NeurozooError
        If the model has no ReLU module.
    """
    targets = [(name, m) for name, m in model.named_modules()
               if isinstance(m, (nn.ReLU, nn.ReLU6))]
    if not targets:
        raise NeurozooError(
            f"{type(model).__name__} has no nn.ReLU or nn.ReLU6 module to replace "
            "with k-winners-take-all"
        )
    for name, _ in targets:
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attr, KWinners(density))
    return len(targets)
