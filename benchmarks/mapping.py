"""Benchmark of neurozoo's mapping engine against the tools people use today.

Run from the repository root::

    PYTHONPATH=$PWD python benchmarks/mapping.py [--quick] [--skip-vgg]

What it does, in one run on this machine:

1. Trial-averaged responses of all bundled neuroids (118 stimuli x 4,312),
   5 seeded outer folds (``kfold_indices(118, 5, 0)``), one penalty grid per
   fold (``alpha_grid`` of the training Gram matrix, 30 values) shared by all
   ridge methods.
2. Real layers of a real model (default ``torchvision:alexnet@random:0``):
   full float32 features (for the feature-based tools) and neurozoo's cached
   summaries (``extract_summaries``).
3. Each method on each layer in a fresh subprocess, so that its peak memory is
   clean: wall time of the method (inputs already loaded) and the growth of
   peak resident memory during it (``VmHWM``, reset after the inputs load). Score:
   per-neuroid Pearson r of out-of-fold predictions over all 118 stimuli; the
   largest absolute difference against scikit-learn ``RidgeCV`` on the full
   features (and, for PLS, against scikit-learn ``PLSRegression``).
4. Extraction with summary accumulation against a bare forward pass (same
   model, same preprocessed batches, inference mode), and the peak memory of
   extracting every default layer of VGG-16 (subprocess, ``VmHWM``).

Results and a machine description go to ``benchmarks/results/mapping.json``.
The machine may be shared: the load average before and after is recorded.

BLAS kernels: some machines set ``OPENBLAS_CORETYPE`` (and
``OPENBLAS_L2_SIZE``) to pin an older OpenBLAS kernel, which slows a current
numpy. The workers run without both (``--keep-blas-env`` keeps them), so every
method, scikit-learn's and himalaya's included, gets the kernel OpenBLAS picks
for this processor; each worker records the kernel it ran (threadpoolctl) and
the machine description records the values that were removed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
METHODS = {
    "neurozoo_cached_f64": "neurozoo kernel ridge from cached Gram, float64",
    "neurozoo_cached_f32": "neurozoo kernel ridge from cached Gram, float32",
    "neurozoo_scratch": "neurozoo: Gram accumulation from features + kernel ridge",
    "sklearn_ridgecv": "scikit-learn RidgeCV(alpha_per_target) on full features",
    "rp_ridgecv": "SparseRandomProjection(JL eps=0.1) + RidgeCV (GCV)",
    "himalaya_numpy": "himalaya KernelRidgeCV(linear, cv=5), numpy backend",
    "himalaya_torch": "himalaya KernelRidgeCV(linear, cv=5), torch CPU backend",
    "sklearn_pls": "scikit-learn PLSRegression(25, scale=False)",
    "sklearn_pls_tight": "scikit-learn PLSRegression(25, scale=False, tol=1e-14, "
                         "max_iter=50000): its NIPALS iterations converged",
    "neurozoo_pls": "neurozoo kernel PLS(25) from cached Gram",
}


BLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
EXTRACT_REPEATS = 7  # alternating extraction / bare forward pairs


def _blas() -> list[dict]:
    """The BLAS libraries loaded in this process and the kernel each runs."""
    from threadpoolctl import threadpool_info

    return [{k: i.get(k) for k in ("internal_api", "version", "architecture",
                                   "num_threads")}
            for i in threadpool_info() if i.get("user_api") == "blas"]


def _maxrss_mb(reset: bool = False) -> float:
    """Peak resident memory of this process in MB (``VmHWM``).

    ``ru_maxrss`` is not used because Linux carries it over from the parent
    across fork and exec. With ``reset``, the peak is first reset to the
    current resident size (``/proc/self/clear_refs``), so that a later call
    gives the peak since this point.
    """
    if reset:
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def machine() -> dict:
    import himalaya
    import sklearn
    import torch

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return {
        "cpu": cpu, "cores": os.cpu_count(), "memory_gb": mem,
        "blas_env_of_the_shell": {k: os.environ.get(k) for k in BLAS_ENV},
        "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
        "python": platform.python_version(), "torch": torch.__version__,
        "numpy": np.__version__, "sklearn": sklearn.__version__,
        "himalaya": himalaya.__version__, "gpu": torch.cuda.is_available(),
        "load_average_start": os.getloadavg(),
    }


# --------------------------------------------------------------------- workers
def _method(method: str, work: Path, layer: str, y: np.ndarray, folds: list,
            grids: np.ndarray, extra: dict):
    """The inputs of ``method`` (loaded now) and a function running it."""
    n = y.shape[0]
    splits = [(np.setdiff1d(np.arange(n), test), test) for test in folds]
    if method.startswith("neurozoo_cached") or method == "neurozoo_pls":
        gram = np.load(work / f"gram_{layer}.npy")
        if method == "neurozoo_pls":
            from neurozoo.mapping import cross_validated_pls
            return lambda: cross_validated_pls(gram, y, folds,
                                               n_components=25).predictions
        from neurozoo.mapping import KernelRidgeCV
        dtype = "float32" if method.endswith("f32") else "float64"

        def run():
            pred = np.empty_like(y)
            for f, (train, test) in enumerate(splits):
                m = KernelRidgeCV(alphas=grids[f], dtype=dtype)
                m.fit(gram[np.ix_(train, train)], y[train])
                pred[test] = m.predict(gram[np.ix_(test, train)])
            return pred
        return run
    x32 = np.load(work / f"x_{layer}.npy")
    if method == "neurozoo_scratch":
        import torch

        from neurozoo.features import gram_rowsum_from_features
        from neurozoo.mapping import KernelRidgeCV

        def run():
            gram = gram_rowsum_from_features(torch.from_numpy(x32))[0].numpy()
            pred = np.empty_like(y)
            for f, (train, test) in enumerate(splits):
                m = KernelRidgeCV(alphas=grids[f])
                m.fit(gram[np.ix_(train, train)], y[train])
                pred[test] = m.predict(gram[np.ix_(test, train)])
            return pred
        return run
    if method == "sklearn_ridgecv":
        from sklearn.linear_model import RidgeCV

        def run():
            x = x32.astype(np.float64)
            pred = np.empty_like(y)
            for f, (train, test) in enumerate(splits):
                m = RidgeCV(alphas=grids[f], alpha_per_target=True)
                pred[test] = m.fit(x[train], y[train]).predict(x[test])
            return pred
        return run
    if method == "rp_ridgecv":
        from sklearn.linear_model import RidgeCV
        from sklearn.random_projection import (
            SparseRandomProjection,
            johnson_lindenstrauss_min_dim,
        )

        from neurozoo.mapping import alpha_grid, center_gram
        k = int(johnson_lindenstrauss_min_dim(n, eps=0.1))
        extra["n_components"] = k

        def run():
            x = x32.astype(np.float64)
            if k < x.shape[1]:
                x = SparseRandomProjection(n_components=k, random_state=0) \
                    .fit_transform(x)
            else:
                extra["note"] = "layer narrower than the JL dimension: not projected"
            pred = np.empty_like(y)
            for train, test in splits:
                xt = x[train]
                grid = alpha_grid(center_gram(xt @ xt.T))
                m = RidgeCV(alphas=grid, alpha_per_target=True)
                pred[test] = m.fit(xt, y[train]).predict(x[test])
            return pred
        return run
    if method.startswith("himalaya"):
        from himalaya.backend import set_backend
        from himalaya.kernel_ridge import KernelRidgeCV as HKRCV
        backend = set_backend("numpy" if method.endswith("numpy") else "torch")

        def run():
            x = x32.astype(np.float64)
            pred = np.empty_like(y)
            for f, (train, test) in enumerate(splits):
                m = HKRCV(alphas=grids[f], kernel="linear", cv=5, fit_intercept=True)
                m.fit(x[train], y[train])
                pred[test] = np.asarray(backend.to_numpy(m.predict(x[test])))
            return pred
        return run
    if method in ("sklearn_pls", "sklearn_pls_tight"):
        import warnings

        from sklearn.cross_decomposition import PLSRegression
        # scikit-learn's default NIPALS tolerance (1e-6) leaves r off by up to
        # 1e-3; at 1e-14 the iterations converge and the results agree to 1e-6
        tight = dict(tol=1e-14, max_iter=50000) if method.endswith("tight") else {}

        def run():
            x = x32.astype(np.float64)
            pred = np.empty_like(y)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                for train, test in splits:
                    m = PLSRegression(n_components=25, scale=False, **tight)
                    pred[test] = m.fit(x[train], y[train]).predict(x[test])
            extra["warnings"] = len(caught)
            return pred
        return run
    raise SystemExit(f"unknown method {method}")


def _ridge_worker(method: str, work: Path, layer: str, repeat: int) -> dict:
    """Time ``method`` on ``layer``: up to ``repeat`` runs while a run takes
    under a minute; the reported wall time is the fastest run."""
    from neurozoo.scoring import pearson_columns

    y = np.load(work / "y.npy")
    folds = [np.load(work / f"fold{f}.npy") for f in range(5)]
    grids = np.load(work / f"alphas_{layer}.npy")
    extra: dict = {}
    run = _method(method, work, layer, y, folds, grids, extra)
    inputs = _maxrss_mb(reset=True)
    walls = []
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        pred = run()
        walls.append(time.perf_counter() - t0)
        if walls[-1] > 60:
            break
    peak = _maxrss_mb()
    np.save(work / f"r_{method}_{layer}.npy", pearson_columns(pred, y))
    return {"wall_s": min(walls), "wall_all_s": walls, "peak_rss_mb": peak,
            "peak_rss_growth_mb": peak - inputs, "blas": _blas(), **extra}


def _extract_worker(model_id: str, budget: float, batch: int, mode: str) -> dict:
    """``mode``: "extract" (time and peak memory of extract_summaries on every
    default layer), "bare" (bare forward passes only) or "both" (bare,
    extraction, bare, in this process).

    Two bare passes are timed: the network as it is loaded (the forward pass
    a user would write) and the same network channels-last, the layout
    extraction runs convolutional networks in on the CPU (``layout="auto"``).
    Against the first, the ratio is what extraction costs a user over a plain
    forward pass; against the second, what the accumulation alone adds."""
    import copy

    import torch

    from neurozoo.data.bundled import default_bundle_path
    from neurozoo.data.stimuli import load_stimulus_set
    from neurozoo.features import extract_summaries, preprocess_stimuli
    from neurozoo.models import load_model

    stimuli = load_stimulus_set(default_bundle_path() / "stimuli")
    loaded = load_model(model_id)
    module = loaded.module.eval()
    # a channels-last copy for the bare passes only: "extract" (VGG-16's peak
    # memory) must not hold a second set of weights
    module_cl = (copy.deepcopy(module).to(memory_format=torch.channels_last)
                 if mode in ("bare", "both") else None)
    out: dict = {"model": model_id, "memory_budget": budget, "batch_size": batch,
                 "n_stimuli": len(stimuli), "mode": mode,
                 "THP_MEM_ALLOC_ENABLE": os.environ.get("THP_MEM_ALLOC_ENABLE")}

    def forward(channels_last: bool = False) -> float:
        t0 = time.perf_counter()
        images = preprocess_stimuli(stimuli, loaded.preprocessing)
        net = module
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
            net = module_cl
        with torch.inference_mode():
            for lo in range(0, len(images), batch):
                net(images[lo: lo + batch])
        return time.perf_counter() - t0

    def extract() -> float:
        t0 = time.perf_counter()
        summaries = extract_summaries(loaded, stimuli, batch_size=batch, device="cpu",
                                      memory_budget=budget, progress=False)
        seconds = time.perf_counter() - t0
        out["n_layers"] = len(summaries)
        out["n_features_total"] = int(sum(s.n_features for s in summaries.values()))
        out["layout"] = next(iter(summaries.values())).meta.get("layout")
        return seconds

    if mode in ("bare", "both"):
        with torch.inference_mode():
            two = preprocess_stimuli(stimuli.subset(stimuli.stimulus_ids[:2]),
                                     loaded.preprocessing)
            module(two)  # warm-up
            module_cl(two.contiguous(memory_format=torch.channels_last))
        out["bare_forward_s"] = [forward()]
        out["bare_forward_channels_last_s"] = [forward(True)]
    if mode == "bare":
        out["bare_forward_s"].append(forward())
        out["bare_forward_channels_last_s"].append(forward(True))
    if mode == "extract":
        out["rss_before_extract_mb"] = _maxrss_mb()
        out["extract_all_s"] = [extract()]
        out["extract_s"] = out["extract_all_s"][0]
        out["peak_rss_mb"] = _maxrss_mb()
    if mode == "both":
        # Alternating runs, so that a slow spell of this shared machine
        # (timings drift by 20%) hits all three; the first extraction in a
        # process pays one-time costs (thread pools, the allocator's growth)
        # and is reported apart.
        out["rss_before_extract_mb"] = _maxrss_mb()
        out["extract_first_s"] = extract()
        out["extract_all_s"] = []
        for _ in range(EXTRACT_REPEATS):
            out["extract_all_s"].append(extract())
            out["bare_forward_s"].append(forward())
            out["bare_forward_channels_last_s"].append(forward(True))
        out["extract_s"] = min(out["extract_all_s"])
        out["peak_rss_mb"] = _maxrss_mb()
    if mode in ("bare", "both"):
        preps = []
        for _ in range(2):
            t0 = time.perf_counter()
            preprocess_stimuli(stimuli, loaded.preprocessing)
            preps.append(time.perf_counter() - t0)
        out["preprocess_s"] = min(preps)
    if mode == "both":
        _ratios(out)
        _ratios(out, "_channels_last")
        out["gram_floor_s"], out["gram_floor_setup"] = _gram_floor(
            len(stimuli), out["n_features_total"])
        bare_fwd = (float(np.median(out["bare_forward_channels_last_s"][1:]))
                    - out["preprocess_s"])
        # No exact extraction in this layout can beat its bare pass plus this
        # arithmetic.
        out["ratio_floor_without_preprocessing"] = 1 + out["gram_floor_s"] / bare_fwd
    out["blas"] = _blas()
    return out


def _gram_floor(n: int, p: int, width: int = 4096, repeats: int = 3
                ) -> tuple[float, dict]:
    """Seconds of the float64 arithmetic alone of exact Gram matrices and row
    sums of ``p`` features over ``n`` stimuli: symmetric rank-k updates of
    ``(n + 1) x width`` blocks already in float64 and in cache, shared among
    ``torch.get_num_threads()`` threads as extraction shares them. No
    conversion from float32, no memory traffic, no bookkeeping: fastest of
    ``repeats``, and the setup measured."""
    from concurrent.futures import ThreadPoolExecutor

    import torch
    from threadpoolctl import threadpool_limits

    workers = torch.get_num_threads()
    blocks = -(-p // width)
    rng = np.random.default_rng(0)
    chunks = [rng.standard_normal((n + 1, width)) for _ in range(workers)]

    def run(w: int) -> None:  # blocks w, w + workers, w + 2 workers...
        b = chunks[w]
        acc = np.zeros((n + 1, n + 1))
        for _ in range(w, blocks, workers):
            acc += b @ b.T

    best = np.inf
    with threadpool_limits(1), ThreadPoolExecutor(workers) as pool:
        for _ in range(repeats):
            t0 = time.perf_counter()
            list(pool.map(run, range(workers)))
            best = min(best, time.perf_counter() - t0)
    return float(best), {"threads": workers, "blas_threads_each": 1,
                         "block": [n + 1, width], "updates": blocks,
                         "columns": blocks * width}


def _ratios(out: dict, bare: str = "") -> None:
    """Fastest extraction over the fastest bare pass (``bare_forward{bare}_s``),
    with and without the image loading and preprocessing that both include,
    and the median over alternating pairs; keys end in ``bare``."""
    runs = out[f"bare_forward{bare}_s"]
    bare_s = float(np.min(runs))
    prep = out["preprocess_s"]
    out[f"ratio_extract_to_bare{bare}"] = out["extract_s"] / bare_s
    out[f"ratio_extract_to_bare_without_preprocessing{bare}"] = (
        (out["extract_s"] - prep) / (bare_s - prep))
    pairs = list(zip(out.get("extract_all_s", []), runs[1:]))
    if len(pairs) > 1:  # alternating runs: each extraction with the bare pass after it
        out[f"ratio_paired_median{bare}"] = float(np.median([e / b for e, b in pairs]))
        out[f"ratio_paired_median_without_preprocessing{bare}"] = float(np.median(
            [(e - prep) / (b - prep) for e, b in pairs]))


def _run_worker(args: list[str], timeout: float, keep_blas_env: bool = False) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if not keep_blas_env:
        for key in BLAS_ENV:
            env.pop(key, None)
    if args[0] == "extract":  # as the neurozoo command line sets it (see cli.py)
        env.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return {"error": (proc.stderr or proc.stdout)[-2000:]}


# ------------------------------------------------------------------------ main
def prepare(work: Path, model_id: str, layers: list[str]) -> dict:
    from neurozoo.data import load_bundled
    from neurozoo.features import extract_summaries
    from neurozoo.mapping import alpha_grid, center_gram, kfold_indices
    from neurozoo.models import load_model
    from neurozoo.rawfeatures import load_features, save_features

    responses, stimuli = load_bundled()
    y = np.nanmean(np.asarray(responses.values, dtype=np.float64), axis=0)
    np.save(work / "y.npy", y)
    n = y.shape[0]
    folds = kfold_indices(n, 5, seed=0)
    for f, test in enumerate(folds):
        np.save(work / f"fold{f}.npy", test)
    loaded = load_model(model_id)
    summaries = extract_summaries(loaded, stimuli, layers=layers, device="cpu",
                                  progress=False)
    # The full features, from the same forward passes as the summaries (same
    # layout and batches: bit-identical values)
    save_features(loaded, stimuli, work / "raw", layers=layers, device="cpu",
                  progress=False)
    _, feats = load_features(work / "raw", layers)
    info = {}
    for nm in layers:
        x = np.ascontiguousarray(feats[nm])
        np.save(work / f"x_{nm}.npy", x)
        gram = summaries[nm].gram
        np.save(work / f"gram_{nm}.npy", gram)
        x64 = x.astype(np.float64)
        ref = x64 @ x64.T
        grids = []
        for test in folds:
            train = np.setdiff1d(np.arange(n), test)
            grids.append(alpha_grid(center_gram(gram[np.ix_(train, train)])))
        np.save(work / f"alphas_{nm}.npy", np.stack(grids))
        info[nm] = {"n_features": int(x.shape[1]),
                    "gram_vs_explicit_rel": float(np.abs(gram - ref).max()
                                                  / np.abs(ref).max())}
    return {"n_stimuli": int(n), "n_neuroids": int(y.shape[1]), "layers": info}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="torchvision:alexnet@random:0")
    ap.add_argument("--layers",
                    default="features.2,features.7,features.12,classifier.2")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--tight-pls-layers", default="features.12,classifier.2",
                    help="layers on which sklearn_pls_tight runs (it is slow)")
    ap.add_argument("--vgg", default="torchvision:vgg16@random:0")
    ap.add_argument("--vgg-budget", type=float, default=0.75 * 2**30)
    ap.add_argument("--vgg-batch", type=int, default=8)
    ap.add_argument("--skip-vgg", action="store_true")
    ap.add_argument("--vgg-from", help="copy the VGG-16 result of an earlier JSON "
                    "(labelled as such) instead of measuring it again")
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs per method while one takes under 60 s (fastest kept)")
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--keep-blas-env", action="store_true",
                    help="keep OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE for the workers")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/mapping.json"))
    ap.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        kind = args.worker[0]
        if kind == "ridge":
            res = _ridge_worker(args.worker[1], Path(args.worker[2]), args.worker[3],
                                int(args.worker[4]))
        else:
            res = _extract_worker(args.worker[1], float(args.worker[2]),
                                  int(args.worker[3]), args.worker[4])
        print("RESULT " + json.dumps(res))
        return

    layers = args.layers.split(",")
    methods = args.methods.split(",")
    result: dict = {"machine": machine(), "blas_env_removed_for_workers": not
                    args.keep_blas_env, "model": args.model, "methods": {
        m: METHODS[m] for m in methods}, "memory_measure": (
        "fresh subprocess per method; peak RSS from /proc/self/status VmHWM, reset "
        "(clear_refs) after the inputs are loaded; peak_rss_mb: peak during the "
        "method including the resident inputs and imports; peak_rss_growth_mb: that "
        "peak minus the resident size at the reset")}
    with tempfile.TemporaryDirectory(prefix="nz-bench-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        result["data"] = prepare(work, args.model, layers)
        print(f"prepared {len(layers)} layers in {time.perf_counter() - t0:.0f} s: "
              + ", ".join(f"{k} p={v['n_features']}"
                          for k, v in result["data"]["layers"].items()), flush=True)
        runs: dict = {}
        for layer in layers:
            runs[layer] = {}
            for method in methods:
                if (method == "sklearn_pls_tight"
                        and layer not in args.tight_pls_layers.split(",")):
                    continue
                res = _run_worker(["ridge", method, str(work), layer,
                                   str(args.repeat)], args.timeout,
                                  args.keep_blas_env)
                rfile = work / f"r_{method}_{layer}.npy"
                if rfile.is_file():
                    r = np.load(rfile)
                    res["median_r"] = float(np.nanmedian(r))
                runs[layer][method] = res
                print(f"  {layer:14s} {method:22s} "
                      + (f"{res['wall_s']:9.2f} s {res['peak_rss_growth_mb']:8.0f} MB"
                         if "wall_s" in res else res.get("error", "")[-300:]),
                      flush=True)
            ref_file = work / f"r_sklearn_ridgecv_{layer}.npy"
            pls_file = work / f"r_sklearn_pls_{layer}.npy"
            tight_file = work / f"r_sklearn_pls_tight_{layer}.npy"
            for method, res in runs[layer].items():
                rfile = work / f"r_{method}_{layer}.npy"
                if not rfile.is_file():
                    continue
                r = np.load(rfile)
                for key, ref in (("max_abs_dr_vs_sklearn_ridgecv", ref_file),
                                 ("max_abs_dr_vs_sklearn_pls", pls_file),
                                 ("max_abs_dr_vs_sklearn_pls_tight", tight_file)):
                    if ref.is_file() and ("pls" in method or "pls" not in key):
                        q = np.load(ref)
                        ok = np.isfinite(r) & np.isfinite(q)
                        res[key] = float(np.abs(r[ok] - q[ok]).max())
                        res[key.replace("max_abs", "median_abs")] = float(
                            np.median(np.abs(r[ok] - q[ok])))
                        res["n_nan_r"] = int((~np.isfinite(r)).sum())
        result["runs"] = runs
    print("extraction vs bare forward pass ...", flush=True)
    result["extraction"] = _run_worker(
        ["extract", args.model, str(2 * 2**30), "32", "both"], args.timeout,
        args.keep_blas_env)
    if args.vgg_from:
        earlier = json.loads(Path(args.vgg_from).read_text())
        result["vgg16_all_layers"] = {**earlier["vgg16_all_layers"],
                                      "from_earlier_run": str(args.vgg_from)}
    elif not args.skip_vgg:
        print("VGG-16, every default layer ...", flush=True)
        vgg = _run_worker(
            ["extract", args.vgg, str(args.vgg_budget), str(args.vgg_batch), "extract"],
            3 * args.timeout, args.keep_blas_env)
        bare = _run_worker(
            ["extract", args.vgg, str(args.vgg_budget), str(args.vgg_batch), "bare"],
            3 * args.timeout, args.keep_blas_env)
        if "extract_s" in vgg and "bare_forward_s" in bare:
            vgg.update(bare_forward_s=bare["bare_forward_s"],
                       preprocess_s=bare["preprocess_s"],
                       note="extraction and bare forward in separate subprocesses")
            _ratios(vgg)
        result["vgg16_all_layers"] = vgg
    result["machine"]["load_average_end"] = os.getloadavg()
    result["summary"] = summarise(result)
    from neurozoo.io import write_json
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, result)
    report(result)
    print(f"wrote {args.out}")


def summarise(result: dict) -> dict:
    out: dict = {"speedup_vs_sklearn_ridgecv": {}, "speedup_vs_himalaya": {}}
    for layer, runs in result["runs"].items():
        ours = runs.get("neurozoo_cached_f64", {}).get("wall_s")
        scratch = runs.get("neurozoo_scratch", {}).get("wall_s")
        for other, key in (("sklearn_ridgecv", "speedup_vs_sklearn_ridgecv"),
                           ("himalaya_numpy", "speedup_vs_himalaya"),
                           ("himalaya_torch", "speedup_vs_himalaya")):
            theirs = runs.get(other, {}).get("wall_s")
            if ours and theirs:
                out[key].setdefault(layer, {})[other] = {
                    "cached": theirs / ours,
                    "scratch": theirs / scratch if scratch else None}
    ext = result.get("extraction", {})
    out["extraction_ratio"] = ext.get("ratio_extract_to_bare")
    vgg = result.get("vgg16_all_layers", {})
    out["vgg16_peak_rss_gb"] = (vgg["peak_rss_mb"] * 2**20 / 1e9 if "peak_rss_mb" in vgg
                                else None)
    out["vgg16_extraction_ratio"] = vgg.get("ratio_extract_to_bare")
    out["targets"] = _targets(result, out)
    return out


def _targets(result: dict, s: dict) -> dict:
    """Each acceptance target of the mapping engine: value, bound, met."""
    def check(value, bound, lower_is_better):
        if value is None:
            return {"value": None, "bound": bound, "met": None}
        met = value <= bound if lower_is_better else value >= bound
        return {"value": value, "bound": bound, "met": bool(met)}

    runs = result["runs"].values()
    sk = [v[k] for d in s["speedup_vs_sklearn_ridgecv"].values() for v in d.values()
          for k in ("cached", "scratch") if v[k] is not None]
    hi = [v[k] for d in s["speedup_vs_himalaya"].values() for v in d.values()
          for k in ("cached", "scratch") if v[k] is not None]
    dr = [r[m]["max_abs_dr_vs_sklearn_ridgecv"] for r in runs
          for m in ("neurozoo_cached_f64", "neurozoo_scratch")
          if "max_abs_dr_vs_sklearn_ridgecv" in r.get(m, {})]
    pls = [r["neurozoo_pls"]["max_abs_dr_vs_sklearn_pls_tight"] for r in runs
           if "max_abs_dr_vs_sklearn_pls_tight" in r.get("neurozoo_pls", {})]
    vgg = result.get("vgg16_all_layers", {})
    ext = result.get("extraction", {})
    return {
        "min_speedup_vs_sklearn_ridgecv": check(min(sk) if sk else None, 20, False),
        "max_abs_dr_vs_sklearn_ridgecv_f64": check(max(dr) if dr else None, 1e-6, True),
        "min_speedup_vs_himalaya_cpu": check(min(hi) if hi else None, 1.0, False),
        "max_abs_dr_pls_vs_sklearn_pls_converged": check(max(pls) if pls else None,
                                                          1e-6, True),
        # the median over alternating extraction / bare pairs: a single
        # fastest-of ratio moves by 0.1-0.2 between runs on this machine.
        # Against the network's forward pass as it is loaded...
        "extraction_ratio_from_image_files": check(
            ext.get("ratio_paired_median", s.get("extraction_ratio")), 1.25, True),
        "extraction_ratio_forward_only": check(
            ext.get("ratio_paired_median_without_preprocessing",
                    ext.get("ratio_extract_to_bare_without_preprocessing")), 1.25, True),
        # ... and against a forward pass in extraction's own layout: what the
        # accumulation adds
        "extraction_ratio_from_image_files_same_layout": check(
            ext.get("ratio_paired_median_channels_last"), 1.25, True),
        "extraction_ratio_forward_only_same_layout": check(
            ext.get("ratio_paired_median_without_preprocessing_channels_last"), 1.25,
            True),
        "vgg16_peak_rss_bytes": check(vgg["peak_rss_mb"] * 2**20
                                      if "peak_rss_mb" in vgg else None, 3e9, True),
    }


def report(result: dict) -> None:
    print()
    print(f"{'layer':14s} {'p':>7s} {'method':22s} {'wall s':>8s} {'+peak MB':>9s} "
          f"{'max|dr| vs skl RidgeCV':>22s} {'vs skl PLS*':>11s} {'median r':>9s}")
    for layer, runs in result["runs"].items():
        p = result["data"]["layers"][layer]["n_features"]
        for method, res in runs.items():
            if "wall_s" not in res:
                print(f"{layer:14s} {p:7d} {method:22s} ERROR")
                continue
            d1 = res.get("max_abs_dr_vs_sklearn_ridgecv")
            d2 = res.get("max_abs_dr_vs_sklearn_pls_tight",
                         res.get("max_abs_dr_vs_sklearn_pls"))
            print(f"{layer:14s} {p:7d} {method:22s} {res['wall_s']:8.2f} "
                  f"{res['peak_rss_growth_mb']:9.0f} "
                  f"{'' if d1 is None else f'{d1:.2e}':>22s} "
                  f"{'' if d2 is None else f'{d2:.2e}':>11s} "
                  f"{res.get('median_r', float('nan')):9.4f}")
    print("* against sklearn_pls_tight where it ran, else sklearn_pls")
    s = result["summary"]
    print("\nspeed-up of neurozoo (cached / from scratch) over:")
    for key in ("speedup_vs_sklearn_ridgecv", "speedup_vs_himalaya"):
        for layer, d in s[key].items():
            for other, v in d.items():
                sc = "n/a" if v["scratch"] is None else f"{v['scratch']:.1f}x"
                print(f"  {other:16s} {layer:14s} {v['cached']:7.1f}x / {sc}")
    ext = result.get("extraction", {})
    if "ratio_extract_to_bare" in ext:
        nan = float("nan")
        print(f"\n{ext['model']}: extraction with accumulation "
              f"{ext['extract_s']:.2f} s (layout {ext.get('layout')}, image loading "
              f"{ext['preprocess_s']:.2f} s included)")
        for label, key in (("as loaded", ""), ("channels-last", "_channels_last")):
            runs = ext.get(f"bare_forward{key}_s")
            if not runs:
                continue
            print(f"  vs bare forward {label:13s} {min(runs):.2f} s: ratio "
                  f"{ext[f'ratio_extract_to_bare{key}']:.2f} (without image loading "
                  f"{ext[f'ratio_extract_to_bare_without_preprocessing{key}']:.2f}); "
                  "median over alternating pairs "
                  f"{ext.get(f'ratio_paired_median{key}', nan):.2f} / "
                  f"{ext.get(f'ratio_paired_median_without_preprocessing{key}', nan):.2f}")
        if "gram_floor_s" in ext:
            setup = ext.get("gram_floor_setup", {})
            print(f"  float64 arithmetic of the Gram matrices alone: {ext['gram_floor_s']:.3f} s"
                  f" ({setup.get('updates')} symmetric updates of {setup.get('block')} on "
                  f"{setup.get('threads')} threads); no exact extraction on this machine "
                  "can go below "
                  f"{ext['ratio_floor_without_preprocessing']:.2f} times the channels-last "
                  "bare pass (without image loading)")
    vgg = result.get("vgg16_all_layers")
    if vgg and "peak_rss_mb" in vgg:
        print(f"{vgg['model']}: {vgg['n_layers']} layers, {vgg['n_features_total']} "
              f"features, peak RSS {vgg['peak_rss_mb'] * 2**20 / 1e9:.2f} GB, extraction "
              f"{vgg['extract_s']:.0f} s, ratio {vgg.get('ratio_extract_to_bare')}")
    elif vgg:
        print(f"VGG-16 run failed: {vgg.get('error', '')[-500:]}")
    print("\ntargets:")
    for name, t in result["summary"]["targets"].items():
        state = {True: "met", False: "NOT MET", None: "not measured"}[t["met"]]
        value = "n/a" if t["value"] is None else f"{t['value']:.4g}"
        print(f"  {name:36s} {value:>12s} (bound {t['bound']:g}): {state}")
    print(f"load average start {result['machine']['load_average_start']}, end "
          f"{result['machine']['load_average_end']}")


if __name__ == "__main__":
    main()
