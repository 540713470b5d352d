"""Partial least squares (PLS2) from Gram matrices.

scikit-learn's ``PLSRegression(scale=False)`` (NIPALS, regression mode)
centres ``X`` and ``Y`` and, for each component, finds the unit weight ``w``
maximising ``|| Y_k^T X_k w ||`` (the dominant left singular vector of
``X_k^T Y_k``, by power iteration), takes the score ``t = X_k w`` and deflates
both blocks by it: ``X_{k+1} = D X_k``, ``Y_{k+1} = D Y_k`` with
``D = I - t t^T / (t^T t)``. Everything depends on ``X`` only through the
centred Gram matrix ``K0 = H X X^T H``:

- with ``D_k`` the product of the deflations so far (a projection, since the
  scores are orthogonal), ``K_k = D_k K0 D_k`` and ``S_k = D_k Y0 Y0^T D_k``;
- the score ``t_k`` is the dominant eigenvector of ``K_k S_k``; with
  ``L = K_k^{1/2}``, ``t_k = L v`` for the top eigenvector ``v`` of the
  symmetric ``L S_k L`` (computed exactly, no power iteration);
- the x weight is ``w_k = X_k^T u_k / ||.||`` with the y score
  ``u_k ~ S_k t_k``, so ``w_k ~ X0^T a_k`` with ``a_k = D_k u_k = S_k t_k``;
- the rotations ``R = W (P^T W)^{-1}`` give the training scores ``T = X0 R``;
  writing ``R = X0^T Z`` yields ``Z = A (T^T K0 A)^{-1} diag(t^T t)`` and the
  prediction ``Y_hat = Kc_test A (T^T K0 A)^{-1} T^T Y0 + mean(Y)``
  (Rosipal & Trejo's kernel PLS with deflated y scores).

The result equals scikit-learn's up to its power-iteration tolerance (the
tests set a tight ``tol``); signs of components do not affect predictions.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from neurozoo.errors import NeurozooError
from neurozoo.mapping.ridge import (
    CVResult,
    _check_targets,
    center_gram,
    check_folds,
)

__all__ = ["KernelPLS", "cross_validated_pls"]

log = logging.getLogger(__name__)


def _eigh(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric eigendecomposition; through numpy's LAPACK on the CPU (faster
    than torch for small matrices), torch elsewhere."""
    if a.device.type == "cpu":
        lam, vec = np.linalg.eigh(a.numpy())
        return torch.from_numpy(lam), torch.from_numpy(vec)
    return torch.linalg.eigh(a)


class KernelPLS:
    """PLS regression (PLS2, NIPALS-equivalent, no scaling) from a Gram matrix.

    Parameters
    ----------
    n_components : int
        Number of latent components (Brain-Score uses 25).
    device : str, optional
        Torch device (``"cpu"``, ``"cuda"``, ``"auto"``).
    dtype : {"float64", "float32"}
        Precision of the products with the targets; the n x n algebra is
        float64.

    Attributes
    ----------
    n_components_ : int
        Components actually fitted (fewer when the centred Gram's rank runs
        out).
    x_scores_ : ndarray, shape (n_train, n_components_)
        Training scores ``T`` (unit norm columns).
    dual_coef_ : ndarray, shape (n_train, n_targets)
        ``Y_hat_test = Kc_test @ dual_coef_ + y_mean_``.
    y_mean_ : ndarray, shape (n_targets,)
    """

    def __init__(self, n_components: int = 25, device: str | None = "cpu",
                 dtype: str = "float64"):
        self.n_components = n_components
        self.device = device
        self.dtype = dtype

    def fit(self, gram: np.ndarray, y: np.ndarray) -> KernelPLS:
        """Fit on a training Gram matrix.

        Parameters
        ----------
        gram : ndarray, shape (n_train, n_train)
            ``X_train X_train^T`` (uncentred); must be finite and symmetric.
        y : ndarray, shape (n_train, n_targets)
        """
        from neurozoo.features import check_gram, resolve_device
        from neurozoo.mapping.backend import (
            as_tensor,
            resolve_dtype,
            small_problem_threads,
            to_numpy,
        )

        gram = np.asarray(gram, dtype=np.float64)
        if gram.ndim != 2 or gram.shape[0] != gram.shape[1]:
            raise NeurozooError(f"pls: Gram matrix has shape {gram.shape}, not square")
        n = gram.shape[0]
        y = _check_targets(y, n, "pls")
        check_gram(gram, "pls")
        if int(self.n_components) < 1:
            raise NeurozooError(
                f"pls: n_components must be >= 1, got {self.n_components}")
        dev = resolve_device(self.device)
        dt = resolve_dtype(self.dtype)
        f64 = torch.float64
        k0 = as_tensor(center_gram(gram), f64, dev)
        k0 = (k0 + k0.T) / 2
        y_mean = y.mean(axis=0)
        y0 = as_tensor(y - y_mean, dt, dev)
        s0 = (y0 @ y0.T).to(f64)
        d = torch.eye(n, dtype=f64, device=dev)
        scale = max(float(torch.trace(k0)), 1e-300)
        scores, dirs = [], []
        with small_problem_threads(dev, n):
            for k in range(int(self.n_components)):
                kk = d @ k0 @ d
                sk = d @ s0 @ d
                ev, vec = _eigh((kk + kk.T) / 2)
                root = (vec * torch.sqrt(torch.clamp(ev, min=0.0))) @ vec.T
                b = root @ sk @ root
                _, v = _eigh((b + b.T) / 2)
                t = root @ v[:, -1]
                if float(t @ kk @ t) <= 1e-12 * scale * float(t @ t) or \
                        float(torch.linalg.norm(t)) == 0.0:
                    log.info("pls: rank exhausted after %d components", k)
                    break
                t = t / torch.linalg.norm(t)
                scores.append(t)
                dirs.append(sk @ t)
                d = d - torch.outer(t, t)
        if not scores:
            raise NeurozooError("pls: the centred Gram matrix is zero; nothing to fit")
        tm = torch.stack(scores, dim=1)  # (n, c)
        am = torch.stack(dirs, dim=1)  # (n, c)
        m = tm.T @ k0 @ am
        z = torch.linalg.solve(m.T, am.T).T  # A M^{-1}
        dual = z.to(dt) @ (tm.to(dt).T @ y0)
        self.n_components_ = len(scores)
        self.x_scores_ = to_numpy(tm)
        self.dual_coef_ = to_numpy(dual)
        self.y_mean_ = y_mean
        self._train_row_mean = gram.mean(axis=0)
        self._train_mean = float(self._train_row_mean.mean())
        return self

    def predict(self, gram_test_train: np.ndarray) -> np.ndarray:
        """Predict from the cross Gram matrix ``X_test X_train^T``.

        Parameters
        ----------
        gram_test_train : ndarray, shape (n_test, n_train)

        Returns
        -------
        ndarray, shape (n_test, n_targets)
        """
        k = np.asarray(gram_test_train, dtype=np.float64)
        kc = (k - k.mean(axis=1, keepdims=True) - self._train_row_mean[None, :]
              + self._train_mean)
        return kc @ self.dual_coef_ + self.y_mean_


def cross_validated_pls(gram: np.ndarray, y: np.ndarray, folds: list[np.ndarray],
                        **kwargs) -> CVResult:
    """Outer k-fold PLS from a Gram matrix.

    Parameters
    ----------
    gram : ndarray, shape (n, n)
    y : ndarray, shape (n, n_targets)
    folds : list of ndarray of int
        Test indices of each fold.
    **kwargs
        Passed to :class:`KernelPLS` (``n_components``, ``device``, ``dtype``).

    Returns
    -------
    CVResult
        ``alpha`` and ``inner_r`` are None.
    """
    from neurozoo.features import check_gram

    gram = np.asarray(gram, dtype=np.float64)
    check_gram(gram, "pls")
    y = _check_targets(y, gram.shape[0], "pls")
    n = y.shape[0]
    folds = check_folds(folds, n)
    pred = np.empty_like(y)
    for test in folds:
        train = np.setdiff1d(np.arange(n), test)
        m = KernelPLS(**kwargs).fit(gram[np.ix_(train, train)], y[train])
        pred[test] = m.predict(gram[np.ix_(test, train)])
    return CVResult.from_predictions(pred, y, folds)
