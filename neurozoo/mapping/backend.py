"""One array backend for CPU and GPU: torch, float32 or float64 by choice.

The mapping methods take ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:1"``,
``"auto"``) and ``dtype`` (``"float64"`` or ``"float32"``). Small n x n
factorisations (centring, eigendecompositions) always run in float64; the
chosen dtype applies to the products with the targets, which carry the cost
when neuroids far outnumber stimuli.

Stated tolerance: on the same inputs, float32 and float64 per-neuroid scores
(Pearson r of out-of-fold predictions) agree within ``FLOAT32_R_TOL`` (2e-2).
Most neuroids agree exactly to six decimals; the largest differences come from
a penalty choice that flips between neighbouring grid values where the
leave-one-out errors nearly tie (measured on AlexNet layers and the bundled
neuroids: max 1.1e-2, median below 1e-6; benchmarks/results/mapping.json).
Use float64 (the default) where 1e-6 agreement with scikit-learn matters.
CPU and GPU agree within the tolerance of the dtype used (float64: 1e-8).
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import lru_cache

import numpy as np
import torch

from neurozoo.errors import NeurozooError

__all__ = ["DTYPES", "FLOAT32_R_TOL", "resolve_dtype", "as_tensor", "to_numpy",
           "small_problem_threads"]

DTYPES = {"float64": torch.float64, "float32": torch.float32}
#: Largest difference in a per-neuroid r between float32 and float64 runs.
FLOAT32_R_TOL = 2e-2


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """``"float64"``/``"float32"`` (or the torch dtype) -> torch dtype."""
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    if dtype not in DTYPES:
        raise NeurozooError(
            f"unknown dtype '{dtype}' (valid: {', '.join(DTYPES)})"
        )
    return DTYPES[dtype]


def as_tensor(a, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """An array or tensor as a torch tensor of ``dtype`` on ``device``."""
    if isinstance(a, torch.Tensor):
        return a.to(device=device, dtype=dtype)
    return torch.as_tensor(np.asarray(a), dtype=dtype, device=device)


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """A tensor as a float64 numpy array on the CPU."""
    return t.detach().to("cpu", torch.float64).numpy()


#: Largest ``n`` for which n x n work runs on one thread (see
#: :func:`small_problem_threads`).
SMALL_N = 512


@contextmanager
def small_problem_threads(device: torch.device, n: int | None = None):
    """One BLAS/LAPACK and torch thread for n x n work on the CPU.

    Multithreaded OpenBLAS on small matrices (n ~ 100) can be a hundred times
    slower than one thread when the cores are shared (threads spin waiting
    for each other). Uses ``threadpoolctl`` when installed; restores the torch
    thread count afterwards. Does nothing for other devices, nor when ``n``
    is given and larger than :data:`SMALL_N` (large products use the threads
    well).
    """
    if device.type != "cpu" or (n is not None and n > SMALL_N):
        yield
        return
    controller = _blas_controller()
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if controller is None:
            yield
        else:
            with controller.limit(limits=1, user_api="blas"):
                yield
    finally:
        torch.set_num_threads(before)


@lru_cache(maxsize=1)
def _blas_controller():
    """The process's BLAS libraries, found once (finding them takes ~1 ms).

    numpy's and scipy's BLAS are loaded first so that both are found.
    """
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # optional
        return None
    import scipy.linalg.blas  # noqa: F401

    return ThreadpoolController()
