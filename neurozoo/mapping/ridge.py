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
from dataclasses import dataclass

import numpy as np
import torch

from neurozoo.errors import NeurozooError

__all__ = ["CVResult", "KernelRidgeCV", "alpha_grid", "center_gram",
           "cross_validated_ridge", "kfold_indices", "pearson_columns"]

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


MIN_TEST_STIMULI = 3
"""Smallest outer test fold: a Pearson r on 1 stimulus is undefined, on 2 it is +-1."""


def kfold_indices(n: int, n_folds: int, seed: int) -> list[np.ndarray]:
    """Test indices of ``n_folds`` seeded random folds of ``range(n)``.

    A permutation from ``numpy.random.default_rng(seed)`` cut into contiguous
    nearly equal parts (``numpy.array_split``); each part sorted. Each part
    must hold at least :data:`MIN_TEST_STIMULI` stimuli, so ``n_folds`` is at
    most ``n // 3``.
    """
    top = n // MIN_TEST_STIMULI
    if not 2 <= n_folds <= top:
        raise NeurozooError(
            f"n_folds must be in [2, {top}] for {n} stimuli (each test fold needs at "
            f"least {MIN_TEST_STIMULI} stimuli for a Pearson r), got {n_folds}")
    perm = np.random.default_rng(seed).permutation(n)
    return [np.sort(part) for part in np.array_split(perm, n_folds)]


def check_folds(folds: list, n: int) -> list[np.ndarray]:
    """Outer folds as integer arrays, checked to partition ``range(n)``.

    Each stimulus must be in exactly one test fold, and each test fold must
    hold at least :data:`MIN_TEST_STIMULI` stimuli.
    """
    out = []
    for f, test in enumerate(folds):
        test = np.asarray(test)
        if test.ndim != 1 or (test.size and not np.issubdtype(test.dtype, np.integer)):
            raise NeurozooError(f"fold {f}: test indices must be a 1-d integer array")
        if test.size < MIN_TEST_STIMULI:
            raise NeurozooError(
                f"fold {f}: {test.size} test stimuli; each fold needs at least "
                f"{MIN_TEST_STIMULI} for a Pearson r")
        if test.min() < 0 or test.max() >= n:
            raise NeurozooError(f"fold {f}: test indices outside [0, {n})")
        out.append(test)
    count = np.bincount(np.concatenate(out), minlength=n) if out else np.zeros(n, int)
    if len(out) < 2 or (count != 1).any():
        raise NeurozooError(
            f"the folds must put each of the {n} stimuli in exactly one test fold, "
            f"with at least 2 folds ({int((count == 0).sum())} stimuli in none, "
            f"{int((count > 1).sum())} in several)")
    return out


def _check_targets(y: np.ndarray, n: int, what: str) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64)
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2 or y.shape[0] != n:
        raise NeurozooError(f"{what}: Gram matrix ({n}, {n}) and targets {y.shape} "
                            "disagree")
    if not np.isfinite(y).all():
        raise NeurozooError(f"{what}: targets contain NaN or infinite values")
    return y


class KernelRidgeCV:
    """Linear ridge on Gram matrices, penalty chosen per target by exact LOO.

    Parameters
    ----------
    alphas : array-like of float, optional
        Penalty grid. Default: :func:`alpha_grid` of the training Gram matrix.
    n_alphas, alpha_low, alpha_high : used for the default grid.
    device : str, optional
        Torch device for the computation (``"cpu"``, ``"cuda"``, ``"auto"``).
    dtype : {"float64", "float32"}
        Precision of the products with the targets (the eigendecomposition is
        always float64). See :mod:`neurozoo.mapping.backend` for tolerances.
    block_bytes : int
        Memory for the (penalties x stimuli x targets) leave-one-out block;
        the penalties are processed in chunks that fit.

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
                 alpha_high: float = 1e5, device: str | None = "cpu",
                 dtype: str = "float64", block_bytes: int = 1 << 28):
        self.alphas = alphas
        self.n_alphas = n_alphas
        self.alpha_low = alpha_low
        self.alpha_high = alpha_high
        self.device = device
        self.dtype = dtype
        self.block_bytes = block_bytes

    def fit(self, gram: np.ndarray, y: np.ndarray) -> KernelRidgeCV:
        """Fit on a training Gram matrix.

        Parameters
        ----------
        gram : ndarray, shape (n_train, n_train)
            ``X_train X_train^T`` (uncentred); must be finite and symmetric.
        y : ndarray, shape (n_train, n_targets)
        """
        from neurozoo.features import check_gram, resolve_device
        from neurozoo.mapping.backend import (
            resolve_dtype,
            small_problem_threads,
            to_numpy,
        )

        gram = np.asarray(gram, dtype=np.float64)
        n = gram.shape[0] if gram.ndim == 2 else -1
        if gram.ndim != 2 or gram.shape != (n, n):
            raise NeurozooError(
                f"ridge: Gram matrix has shape {gram.shape}, not square")
        y = _check_targets(y, n, "ridge")
        check_gram(gram, "ridge")
        dev = resolve_device(self.device)
        dt = resolve_dtype(self.dtype)
        kc = center_gram(gram)
        alphas = (alpha_grid(kc, self.n_alphas, self.alpha_low, self.alpha_high)
                  if self.alphas is None
                  else np.atleast_1d(np.asarray(self.alphas, dtype=np.float64)))
        if alphas.size == 0 or (alphas <= 0).any():
            raise NeurozooError("ridge: penalties must be positive")
        # On the CPU the work is many small products: one thread each is
        # faster than threads waiting for each other (see small_problem_threads).
        with small_problem_threads(dev, n):
            best, loo_mse, w_d, q, qty, yt = self._loo(kc, y, alphas, dev, dt)
            w_sel = w_d[best].T  # (n, t)
            qd = q.to(dt)
            dual = qd @ (w_sel * qty)
            d_sel = (q * q).to(dt) @ w_sel
            loo_pred = yt - dual / d_sel
        best_np = best.cpu().numpy()
        self.alphas_ = alphas
        self.alpha_index_ = best_np
        self.alpha_ = alphas[best_np]
        self.loo_mse_ = to_numpy(loo_mse)
        self.y_mean_ = y.mean(axis=0)
        self.dual_coef_ = to_numpy(dual)
        self.loo_predictions_ = to_numpy(loo_pred)
        self._train_row_mean = gram.mean(axis=0)
        self._train_mean = float(self._train_row_mean.mean())
        edge = (best_np == 0) | (best_np == len(alphas) - 1)
        if edge.mean() > 0.1:
            log.debug("ridge: %.0f%% of targets chose a penalty at the grid's edge",
                      100 * edge.mean())
        return self

    def _loo(self, kc: np.ndarray, y: np.ndarray, alphas: np.ndarray,
             dev: torch.device, dt: torch.dtype):
        """Mean squared leave-one-out residual for every penalty and target.

        Returns the index of the best penalty per target and the pieces the
        final fit reuses.
        """
        from neurozoo.mapping.backend import as_tensor

        n = kc.shape[0]
        # Lift the constant direction to a distinct, largest eigenvalue so that
        # it can be identified and left unpenalised.
        lift = float(np.trace(kc)) + 1.0
        if dev.type == "cpu":  # LAPACK through numpy: faster for small n
            lam_np, q_np = np.linalg.eigh(kc + lift / n)
            lam, q = torch.from_numpy(lam_np), torch.from_numpy(q_np)
        else:
            lam, q = torch.linalg.eigh(as_tensor(kc + lift / n, torch.float64, dev))
        const = int(torch.argmax(torch.abs(q.sum(dim=0))))
        lam = torch.clamp(lam, min=0.0)
        mask = torch.ones(n, dtype=torch.bool, device=dev)
        mask[const] = False
        alphas_t = as_tensor(alphas, torch.float64, dev)
        w_all = torch.where(mask[None, :], 1.0 / (lam[None, :] + alphas_t[:, None]),
                            torch.zeros((), dtype=torch.float64, device=dev))  # (A, n)
        d_all = w_all @ (q * q).T  # (A, n): diagonal of G for every penalty
        yt = as_tensor(y, dt, dev)
        qty = q.to(dt).T @ yt  # (n, t)
        n_alphas, t = len(alphas), y.shape[1]
        size = yt.element_size()
        # LOO residuals for penalty a: diag(1/d_a) Q diag(w_a) Q^T y = E_a (Q^T y).
        # E for a chunk of penalties is stacked into one (a n, n) matrix; its
        # product with a block of targets is squared and summed at once. On
        # the CPU the blocks are sized to stay in cache (about 4 MB).
        per_alpha = max(1, min(n_alphas, int(self.block_bytes) // (n * n * size)))
        cache = (4 << 20) if dev.type == "cpu" else int(self.block_bytes)
        loo_mse = torch.empty((n_alphas, t), dtype=dt, device=dev)
        for lo in range(0, n_alphas, per_alpha):
            hi = min(lo + per_alpha, n_alphas)
            e = ((q[None, :, :] * w_all[lo:hi, None, :]) / d_all[lo:hi, :, None]
                 ).to(dt).reshape(-1, n)
            step = max(32, cache // (e.shape[0] * size))
            for t0 in range(0, t, step):
                t1 = min(t0 + step, t)
                res = (e @ qty[:, t0:t1]).square_()
                loo_mse[lo:hi, t0:t1] = res.reshape(hi - lo, n, t1 - t0).sum(dim=1)
        loo_mse /= n
        best = torch.argmin(loo_mse, dim=0)  # first minimum on ties
        return best, loo_mse, w_all.to(dt), q, qty, yt

    def predict(self, gram_test_train: np.ndarray) -> np.ndarray:
        """Predict from the cross Gram matrix ``X_test X_train^T``.

        Parameters
        ----------
        gram_test_train : ndarray, shape (n_test, n_train)

        Returns
        -------
        ndarray, shape (n_test, n_targets)
        """
        from neurozoo.mapping.backend import small_problem_threads

        k = np.asarray(gram_test_train, dtype=np.float64)
        kc = (k - k.mean(axis=1, keepdims=True) - self._train_row_mean[None, :]
              + self._train_mean)
        with small_problem_threads(torch.device("cpu"), k.shape[1]):
            return kc @ self.dual_coef_ + self.y_mean_


@dataclass
class CVResult:
    """Out-of-fold results of a mapping over outer folds.

    Attributes
    ----------
    predictions : ndarray, shape (n_stimuli, n_targets)
        Each stimulus predicted by the model fit without its fold.
    r : ndarray, shape (n_targets,)
        Mean over folds of ``r_folds`` (see :func:`fold_mean`): the definition
        the scores of a run use (:mod:`neurozoo.scoring`).
    r_folds : ndarray, shape (n_folds, n_targets)
        Pearson r between the predictions and the targets on each fold's test
        stimuli.
    r_pooled : ndarray, shape (n_targets,)
        Pearson r over all stimuli of the pooled out-of-fold predictions.
        Each fold's model has its own intercept, so under the null this is
        biased negative; it is kept for comparison with tools that report it.
    alpha : ndarray, shape (n_folds, n_targets) or None
        Chosen penalty per fold and target (ridge only).
    inner_r : ndarray, shape (n_folds, n_targets) or None
        Leave-one-out r on each fold's training stimuli (ridge only).
    """

    predictions: np.ndarray
    r: np.ndarray
    r_folds: np.ndarray
    r_pooled: np.ndarray
    alpha: np.ndarray | None = None
    inner_r: np.ndarray | None = None

    @classmethod
    def from_predictions(cls, predictions: np.ndarray, y: np.ndarray,
                         folds: list[np.ndarray], **extra) -> CVResult:
        """Per-fold, mean and pooled r of out-of-fold ``predictions``."""
        r_folds = np.stack([pearson_columns(predictions[test], y[test])
                            for test in folds])
        return cls(predictions, fold_mean(r_folds), r_folds,
                   pearson_columns(predictions, y), **extra)


def fold_mean(r_folds: np.ndarray) -> np.ndarray:
    """Mean of per-fold r over the folds where r is defined.

    r is undefined (NaN) on a test fold where the target or the prediction is
    constant: a sparse unit silent on every test stimulus of a fold, say. Such
    a fold carries no evidence either way, so the mean is over the other
    folds; a target undefined on every fold stays NaN.

    Parameters
    ----------
    r_folds : ndarray, shape (n_folds, ...)
    """
    finite = np.isfinite(r_folds)
    count = finite.sum(axis=0)
    total = np.where(finite, r_folds, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def pearson_columns(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r between matching columns. (n, t), (n, t) -> (t,)."""
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a * b).sum(0) / np.sqrt((a * a).sum(0) * (b * b).sum(0))


def cross_validated_ridge(gram: np.ndarray, y: np.ndarray, folds: list[np.ndarray],
                          **kwargs) -> CVResult:
    """Outer k-fold kernel ridge; the penalty per target chosen on training data.

    Parameters
    ----------
    gram : ndarray, shape (n, n)
        ``X X^T`` over all stimuli (uncentred).
    y : ndarray, shape (n, n_targets)
    folds : list of ndarray of int
        Test indices of each fold (e.g. :func:`kfold_indices`).
    **kwargs
        Passed to :class:`KernelRidgeCV` (``alphas``, ``n_alphas``, ``device``,
        ``dtype``...).

    Returns
    -------
    CVResult
    """
    from neurozoo.features import check_gram

    gram = np.asarray(gram, dtype=np.float64)
    check_gram(gram, "ridge")
    y = _check_targets(y, gram.shape[0], "ridge")
    n, t = y.shape
    folds = check_folds(folds, n)
    pred = np.empty((n, t))
    alpha = np.empty((len(folds), t))
    inner = np.empty((len(folds), t))
    for f, test in enumerate(folds):
        train = np.setdiff1d(np.arange(n), test)
        m = KernelRidgeCV(**kwargs).fit(gram[np.ix_(train, train)], y[train])
        pred[test] = m.predict(gram[np.ix_(test, train)])
        alpha[f] = m.alpha_
        inner[f] = pearson_columns(m.loo_predictions_, y[train])
    return CVResult.from_predictions(pred, y, folds, alpha=alpha, inner_r=inner)
