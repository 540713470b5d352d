"""The primal path: stimulus sets too large for an n x n Gram matrix.

Each layer's output is projected while the network runs, batch by batch, by a
sparse random matrix ``R`` (p x k; Achlioptas / Li et al.: entries
``+-sqrt(1 / (density k))`` with probability ``density / 2`` each, else 0,
``density = 1 / sqrt(p)``), so that ``E ||x R||^2 = ||x||^2``. Only ``Z = X R``
(n x k) is kept. ``k`` defaults to the Johnson-Lindenstrauss dimension
``4 ln n / (eps^2 / 2 - eps^3 / 3)`` (``eps = 0.1``). ``R`` is generated in
fixed row blocks from ``(seed, block)``, so it does not depend on the batch
size or the device.

:class:`PrimalRidgeCV` fits ridge on ``Z`` with the same estimator and exact
leave-one-out criterion as :class:`~neurozoo.mapping.KernelRidgeCV` on the
Gram matrix ``Z Z^T``, through the SVD of the centred ``Z`` (memory n x k,
not n x n).

:func:`neurozoo.features.extract_auto` picks the Gram path when the n x n
matrix is small enough and this path otherwise, and logs the choice.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch

from neurozoo.errors import NeurozooError
from neurozoo.mapping.ridge import _check_targets

__all__ = ["jl_dimension", "sparse_projection", "SparseProjector", "PrimalRidgeCV"]

log = logging.getLogger(__name__)

#: Rows of ``R`` generated from one seed: fixed, so ``R`` is reproducible.
BLOCK_ROWS = 1 << 16


def jl_dimension(n: int, eps: float = 0.1) -> int:
    """Johnson-Lindenstrauss dimension for ``n`` points and distortion ``eps``.

    Same formula as scikit-learn's ``johnson_lindenstrauss_min_dim``.
    """
    if not 0 < eps < 1:
        raise NeurozooError(f"eps must be in (0, 1), got {eps}")
    return int(4 * math.log(n) / (eps ** 2 / 2 - eps ** 3 / 3))


def sparse_projection(p: int, k: int, seed: int = 0,
                      density: float | None = None) -> tuple[np.ndarray, np.ndarray,
                                                             np.ndarray]:
    """The nonzero entries of the sparse random matrix ``R`` (p x k).

    Parameters
    ----------
    p, k : int
        Input and output dimensions.
    seed : int
    density : float, optional
        Fraction of nonzero entries; default ``1 / sqrt(p)``.

    Returns
    -------
    rows, cols : ndarray of int64, shape (nnz,)
    values : ndarray of float32, shape (nnz,)
    """
    density = 1.0 / math.sqrt(p) if density is None else float(density)
    if not 0 < density <= 1:
        raise NeurozooError(f"density must be in (0, 1], got {density}")
    value = math.sqrt(1.0 / (density * k))
    rows, cols, vals = [], [], []
    for b, lo in enumerate(range(0, p, BLOCK_ROWS)):
        m = min(BLOCK_ROWS, p - lo)
        rng = np.random.default_rng([seed, b])
        nnz = rng.binomial(m * k, density)
        flat = np.unique(rng.integers(0, m * k, size=nnz))
        signs = rng.integers(0, 2, size=flat.size) * 2 - 1
        rows.append(lo + flat // k)
        cols.append(flat % k)
        vals.append((signs * value).astype(np.float32))
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)


class SparseProjector:
    """Projects batches of flattened layer outputs: ``(b, p) -> (b, k)``.

    Parameters
    ----------
    p, k : int
    seed : int
    device : torch.device or str
    """

    def __init__(self, p: int, k: int, seed: int = 0, device="cpu"):
        self.p = p
        self.k = k
        self.seed = seed
        self.device = device
        rows, cols, vals = sparse_projection(p, k, seed)
        idx = torch.from_numpy(np.stack([cols, rows]))
        self._rt = torch.sparse_coo_tensor(idx, torch.from_numpy(vals), (k, p),
                                           device=device,
                                           check_invariants=True).coalesce()

    def dense(self) -> np.ndarray:
        """``R`` as a dense array, shape (p, k) (for tests and small p)."""
        return self._rt.to_dense().T.cpu().numpy()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``x R`` for ``x`` of shape (b, p); float32 in, float32 out."""
        return torch.sparse.mm(self._rt, x.to(torch.float32).T).T


class PrimalRidgeCV:
    """Ridge on explicit (projected) features, penalty per target by exact LOO.

    The same estimator as :class:`~neurozoo.mapping.KernelRidgeCV` applied to
    ``Z Z^T``, computed from the SVD of the centred ``Z`` (memory n x k).

    Parameters
    ----------
    alphas : array-like of float, optional
        Default: ``mean eigenvalue x logspace(alpha_low, alpha_high)`` as in
        :func:`~neurozoo.mapping.alpha_grid`.
    n_alphas, alpha_low, alpha_high : used for the default grid.
    device : str, optional
    dtype : {"float64", "float32"}

    Attributes
    ----------
    alphas_ : ndarray, shape (n_alphas,)
    alpha_ : ndarray, shape (n_targets,)
    alpha_index_ : ndarray of int, shape (n_targets,)
    loo_mse_ : ndarray, shape (n_alphas, n_targets)
    loo_predictions_ : ndarray, shape (n_train, n_targets)
    coef_ : ndarray, shape (k, n_targets)
    intercept_ : ndarray, shape (n_targets,)
    """

    def __init__(self, alphas=None, n_alphas: int = 30, alpha_low: float = 1e-4,
                 alpha_high: float = 1e5, device: str | None = "cpu",
                 dtype: str = "float64"):
        self.alphas = alphas
        self.n_alphas = n_alphas
        self.alpha_low = alpha_low
        self.alpha_high = alpha_high
        self.device = device
        self.dtype = dtype

    def fit(self, z: np.ndarray, y: np.ndarray) -> PrimalRidgeCV:
        """Fit on training features.

        Parameters
        ----------
        z : ndarray, shape (n_train, k)
        y : ndarray, shape (n_train, n_targets)
        """
        from neurozoo.features import resolve_device
        from neurozoo.mapping.backend import as_tensor, resolve_dtype, to_numpy

        z = np.asarray(z, dtype=np.float64)
        if z.ndim != 2 or not np.isfinite(z).all():
            raise NeurozooError("primal ridge: features must be a finite 2-d array")
        n = z.shape[0]
        y = _check_targets(y, n, "primal ridge")
        dev = resolve_device(self.device)
        dt = resolve_dtype(self.dtype)
        mean = z.mean(axis=0)
        u, s, vt = np.linalg.svd(z - mean, full_matrices=False)
        keep = s > s.max(initial=0.0) * max(n, z.shape[1]) * np.finfo(float).eps
        u, s, vt = u[:, keep], s[:, None][keep][:, 0], vt[keep]
        s2 = s * s
        if self.alphas is None:
            scale = float(s2.sum()) / n if s2.sum() > 0 else 1.0
            alphas = scale * np.logspace(np.log10(self.alpha_low),
                                         np.log10(self.alpha_high), self.n_alphas)
        else:
            alphas = np.atleast_1d(np.asarray(self.alphas, dtype=np.float64))
        if alphas.size == 0 or (alphas <= 0).any():
            raise NeurozooError("primal ridge: penalties must be positive")
        y_mean = y.mean(axis=0)
        f_all = s2[None, :] / (s2[None, :] + alphas[:, None])  # (A, r)
        h_all = 1.0 / n + (u * u) @ f_all.T  # (n, A): leverages
        ut = as_tensor(u, dt, dev)
        yc = as_tensor(y - y_mean, dt, dev)
        uty = ut.T @ yc  # (r, t)
        t = y.shape[1]
        loo_mse = torch.empty((len(alphas), t), dtype=dt, device=dev)
        f_t = as_tensor(f_all, dt, dev)
        inv_1mh = as_tensor(1.0 / (1.0 - h_all), dt, dev)
        for a in range(len(alphas)):
            res = (yc - ut @ (f_t[a][:, None] * uty)) * inv_1mh[:, a:a + 1]
            loo_mse[a] = res.square_().mean(dim=0)
        best = torch.argmin(loo_mse, dim=0)
        best_np = best.cpu().numpy()
        f_sel = f_t[best].T  # (r, t)
        fitted = ut @ (f_sel * uty)
        loo = yc - (yc - fitted) * inv_1mh.T[best].T
        g_sel = as_tensor(s[None, :] / (s2[None, :] + alphas[best_np][:, None]), dt,
                          dev).T  # (r, t)
        coef = as_tensor(vt.T, dt, dev) @ (g_sel * uty)
        self.alphas_ = alphas
        self.alpha_index_ = best_np
        self.alpha_ = alphas[best_np]
        self.loo_mse_ = to_numpy(loo_mse)
        self.loo_predictions_ = to_numpy(loo) + y_mean
        self.coef_ = to_numpy(coef)
        self.intercept_ = y_mean - mean @ self.coef_
        return self

    def predict(self, z: np.ndarray) -> np.ndarray:
        """Predict from features of shape (n_test, k); returns (n_test, n_targets)."""
        return np.asarray(z, dtype=np.float64) @ self.coef_ + self.intercept_
