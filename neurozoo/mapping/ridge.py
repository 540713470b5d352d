"""Ridge regression from Gram matrices, with exact leave-one-out penalties.

The model for each neuroid ``j`` is ``y_j = b_j + X w_j`` with the penalty
``alpha_j ||w_j||^2`` on ``w_j`` only (the intercept is not penalised; it is
handled by centring on the training stimuli). In dual form everything needs
only the training Gram matrix ``K = X X^T``:

- centre: ``Kc = H K H`` with ``H = I - 11^T/n``;
- eigendecompose ``Kc = Q diag(lam) Q^T`` once per training set;
- for each penalty ``alpha``, ``G = Q diag(w) Q^T`` with ``w = 1/(lam + alpha)``
  except ``w = 0`` on the constant eigenvector (the unpenalised intercept);
  the leave-one-out residuals of every neuroid are ``(G y)_i / G_ii``;
- choose ``alpha_j`` minimising the mean squared leave-one-out residual of
  neuroid ``j`` (first minimum on ties), fit on all training stimuli, and
  predict test stimuli from the centred cross-kernel.

This is the same estimator and the same leave-one-out criterion as
scikit-learn's ``RidgeCV(alphas, fit_intercept=True, alpha_per_target=True)``
with its default (efficient leave-one-out) cross-validation; the tests check
agreement to 1e-6.
"""

from __future__ import annotations

import logging

import numpy as np

from neurozoo.errors import NeurozooError

__all__ = ["KernelRidgeCV", "alpha_grid", "center_gram", "kfold_indices"]

log = logging.getLogger(__name__)


def center_gram(gram: np.ndarray) -> np.ndarray:
    """``H K H``: the Gram matrix of features centred over the stimuli.

    Parameters
    ----------
    gram : ndarray, shape (n, n)
    """
    row = gram.mean(axis=0)
    return gram - row[None, :] - row[:, None] + row.mean()


def alpha_grid(gram_centered: np.ndarray, n_alphas: int = 30,
               low: float = 1e-4, high: float = 1e5) -> np.ndarray:
    """Penalties scaled to the data: ``mean eigenvalue x logspace(low, high)``.

    The mean eigenvalue of the centred training Gram matrix, ``trace / n``,
    sets the scale, so the grid follows the layer's size and activation scale.
    The default nine decades cover interpolation to near-constant prediction.

    Returns
    -------
    ndarray, shape (n_alphas,)
    """
    scale = float(np.trace(gram_centered)) / gram_centered.shape[0]
    if not np.isfinite(scale) or scale <= 0:
        scale = 1.0
    return scale * np.logspace(np.log10(low), np.log10(high), n_alphas)


def kfold_indices(n: int, n_folds: int, seed: int) -> list[np.ndarray]:
    """Test indices of ``n_folds`` seeded random folds of ``range(n)``.

    A permutation from ``numpy.random.default_rng(seed)`` cut into contiguous
    nearly equal parts (``numpy.array_split``); each part sorted.
    """
    if not 2 <= n_folds <= n:
        raise NeurozooError(f"n_folds must be in [2, {n}], got {n_folds}")
    perm = np.random.default_rng(seed).permutation(n)
    return [np.sort(part) for part in np.array_split(perm, n_folds)]


class KernelRidgeCV:
    """Linear ridge on Gram matrices, penalty chosen per target by exact LOO.

    Parameters
    ----------
    alphas : array-like of float, optional
        Penalty grid. Default: :func:`alpha_grid` of the training Gram matrix.
    n_alphas, alpha_low, alpha_high : used for the default grid.

    Attributes
    ----------
    alphas_ : ndarray, shape (n_alphas,)
        The grid actually used.
    alpha_ : ndarray, shape (n_targets,)
        Chosen penalty per target.
    alpha_index_ : ndarray of int, shape (n_targets,)
    loo_mse_ : ndarray, shape (n_alphas, n_targets)
        Mean squared leave-one-out residual for every penalty and target.
    loo_predictions_ : ndarray, shape (n_train, n_targets)
        Leave-one-out predictions at the chosen penalty.
    dual_coef_ : ndarray, shape (n_train, n_targets)
    y_mean_ : ndarray, shape (n_targets,)
    """

    def __init__(self, alphas=None, n_alphas: int = 30, alpha_low: float = 1e-4,
                 alpha_high: float = 1e5):
        self.alphas = alphas
        self.n_alphas = n_alphas
        self.alpha_low = alpha_low
        self.alpha_high = alpha_high

    def fit(self, gram: np.ndarray, y: np.ndarray) -> KernelRidgeCV:
        """Fit on a training Gram matrix.

        Parameters
        ----------
        gram : ndarray, shape (n_train, n_train)
            ``X_train X_train^T`` (uncentred).
        y : ndarray, shape (n_train, n_targets)
        """
        gram = np.asarray(gram, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if y.ndim == 1:
            y = y[:, None]
        n = gram.shape[0]
        if gram.shape != (n, n) or y.shape[0] != n:
            raise NeurozooError(
                f"ridge: Gram matrix {gram.shape} and targets {y.shape} disagree"
            )
        if not np.isfinite(y).all():
            raise NeurozooError("ridge: targets contain NaN or infinite values")
        kc = center_gram(gram)
        alphas = (alpha_grid(kc, self.n_alphas, self.alpha_low, self.alpha_high)
                  if self.alphas is None else np.asarray(self.alphas, dtype=np.float64))
        if (alphas <= 0).any():
            raise NeurozooError("ridge: penalties must be positive")
        # Lift the constant direction to a distinct, largest eigenvalue so that
        # it can be identified and left unpenalised.
        lift = float(np.trace(kc)) + 1.0
        lam, q = np.linalg.eigh(kc + lift / n)
        const = int(np.argmax(np.abs(q.sum(axis=0))))
        lam = np.clip(lam, 0.0, None)
        mask = np.ones(n, dtype=bool)
        mask[const] = False
        qty = q.T @ y  # (n, t)
        q2 = q * q
        loo_mse = np.empty((len(alphas), y.shape[1]))
        for a, alpha in enumerate(alphas):
            w = np.where(mask, 1.0 / (lam + alpha), 0.0)
            c = q @ (w[:, None] * qty)
            d = q2 @ w
            loo_mse[a] = np.mean((c / d[:, None]) ** 2, axis=0)
        best = np.argmin(loo_mse, axis=0)
        self.alphas_ = alphas
        self.alpha_index_ = best
        self.alpha_ = alphas[best]
        self.loo_mse_ = loo_mse
        self.y_mean_ = y.mean(axis=0)
        dual = np.empty_like(y)
        loo_pred = np.empty_like(y)
        for a in np.unique(best):
            cols = best == a
            w = np.where(mask, 1.0 / (lam + alphas[a]), 0.0)
            c = q @ (w[:, None] * qty[:, cols])
            d = q2 @ w
            loo_pred[:, cols] = y[:, cols] - c / d[:, None]
            dual[:, cols] = c
        self.dual_coef_ = dual
        self.loo_predictions_ = loo_pred
        self._train_row_mean = gram.mean(axis=0)
        self._train_mean = float(self._train_row_mean.mean())
        edge = (best == 0) | (best == len(alphas) - 1)
        if edge.mean() > 0.1:
            log.debug("ridge: %.0f%% of targets chose a penalty at the grid's edge",
                      100 * edge.mean())
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
