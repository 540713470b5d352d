"""Raw layer features on disk, for users who want the activations themselves.

The mapping methods need only the Gram summaries (:mod:`neurozoo.features`),
but some analyses need the features: a nonlinear readout, a custom
regression, a look at single units. :func:`save_features` runs the network
once over the stimuli and streams every chosen layer's flattened float32
output, batch by batch, into one ``.npy`` file per layer (shape
``(n_stimuli, n_features)``, rows in the order of the stimulus set). Memory
stays at one batch whatever the layer sizes; the disk space is checked
first, since it is large (AlexNet's default layers on the 118 bundled
images: 0.5 GB; VGG-16's 37: 13.5 GB).

Each file is written under a temporary name and renamed when the pass ends;
a JSON sidecar next to it (``<layer>.npy.json``) names what it holds (model, weights, stimuli,
preprocessing, layer: the key of the layer's Gram summary). A rerun keeps
the files whose sidecar matches and computes only the others. ``features.json``
in the folder lists the layers, their files and shapes and the stimulus ids.
:func:`load_features` opens them memory-mapped.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

import neurozoo
from neurozoo.data.stimuli import StimulusSet
from neurozoo.errors import NeurozooError
from neurozoo.features import (
    EXTRACTION_VERSION,
    _finish,
    _start,
    _Stop,
    architecture_tag,
    exact_float32,
    summary_key,
)
from neurozoo.io import check_output_dir, read_json, stable_hash, write_json

__all__ = ["save_features", "load_features", "INDEX_NAME"]

log = logging.getLogger(__name__)

#: The index file of a raw-feature folder.
INDEX_NAME = "features.json"


def _file_stem(layer: str) -> str:
    """A file name for ``layer``: the name itself when it is a plain file name
    (module names are dotted identifiers), else a safe form with a hash (a
    ``ModuleDict`` key may hold ``/`` or other characters)."""
    if re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", layer) and len(layer) <= 200:
        return layer
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", layer)[:100].lstrip(".")
    return f"{safe}-{stable_hash(layer, length=8)}"


def _header(n: int, p: int) -> bytes:
    """The ``.npy`` header of a C-ordered float32 array of shape (n, p)."""
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": np.lib.format.dtype_to_descr(np.dtype("<f4")),
              "fortran_order": False, "shape": (n, p)})
    return buf.getvalue()


def _pwrite_all(fd: int, data: np.ndarray, offset: int) -> None:
    view = memoryview(np.ascontiguousarray(data)).cast("B")
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def _is_valid(npy: Path, sidecar: Path, key: str, n: int, p: int) -> bool:
    if not (npy.is_file() and sidecar.is_file()):
        return False
    try:
        meta = read_json(sidecar)
    except (OSError, ValueError):
        return False
    return (meta.get("key") == key and meta.get("shape") == [n, p]
            and npy.stat().st_size == len(_header(n, p)) + 4 * n * p)


def save_features(loaded, stimuli: StimulusSet, out_dir: str | os.PathLike,
                  layers: list[str] | None = None, batch_size: int = 32,
                  device: str | None = None, progress: bool = True,
                  layout: str = "auto") -> dict:
    """Write each layer's raw features to ``out_dir/<layer>.npy``.

    Parameters
    ----------
    loaded : neurozoo.models.LoadedModel
    stimuli : StimulusSet
    out_dir : path
        Folder for the ``.npy`` files, their sidecars and ``features.json``.
    layers : list of str, optional
        Module names; default: the default layers
        (:func:`neurozoo.features.default_layers`).
    batch_size : int
    device : str, optional
        ``"cpu"``, ``"cuda"``...; default: GPU if available.
    progress : bool
    layout : str
        Memory layout of the forward pass
        (:func:`neurozoo.features.choose_layout`); use the one the summaries
        were made with for bit-identical features. The files hold the usual
        (channel, height, width) order whatever the layout.

    Returns
    -------
    dict
        The index written to ``out_dir/features.json``.

    Raises
    ------
    NeurozooError
        When the disk lacks the space the files need (nothing is written).
    """
    out_dir = Path(out_dir)
    check_output_dir(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dev, module, images, default_names, chosen, _, used, formats = _start(
        loaded, stimuli, device, layers, layout)
    try:
        n = images.shape[0]
        n_default = max(len(default_names) - 1, 1)
        prep = loaded.preprocessing.to_dict()
        stim_id = stimuli.identity()
        arch = architecture_tag(loaded)
        sizes = {nm: int(np.prod(shape)) for nm, shape in chosen}
        keys = {nm: summary_key(loaded.weights_sha256, prep, stim_id, nm, arch)
                for nm, _ in chosen}

        def paths(name: str) -> tuple[Path, Path]:
            stem = _file_stem(name)  # sidecars end in .npy.json: never the index's name
            return out_dir / f"{stem}.npy", out_dir / f"{stem}.npy.json"

        todo = [nm for nm, _ in chosen if not _is_valid(*paths(nm), keys[nm], n, sizes[nm])]
        t0 = time.perf_counter()
        if todo:
            need = sum(len(_header(n, sizes[nm])) + 4 * n * sizes[nm] for nm in todo)
            free = shutil.disk_usage(out_dir).free
            if need > free:
                raise NeurozooError(
                    f"saving the raw features of {loaded.spec.model_id} ({len(todo)} layers) "
                    f"needs {need / 1e9:.2f} GB in {out_dir}, but {free / 1e9:.2f} GB are "
                    "free: choose fewer layers or another folder")
            for nm in todo:  # stale stamps go before their files change
                paths(nm)[1].unlink(missing_ok=True)
            log.info("%s: writing the raw features of %d layers (%.2f GB) to %s "
                     "(%d kept from an earlier run)", loaded.spec.model_id, len(todo),
                     need / 1e9, out_dir, len(chosen) - len(todo))
            _write_pass(module, todo, sizes, images, batch_size, dev, out_dir, paths,
                        progress, loaded.spec.model_id)
            seconds = time.perf_counter() - t0
            for nm in todo:
                write_json(paths(nm)[1], {
                    "key": keys[nm], "layer": nm, "shape": [n, sizes[nm]],
                    "layer_shape": list(dict(chosen)[nm]), "dtype": "float32",
                    "model_id": loaded.spec.model_id,
                    "weights_sha256": loaded.weights_sha256, "stimuli_sha256": stim_id,
                    "preprocessing": prep, "extraction_version": EXTRACTION_VERSION,
                    "device": str(dev), "layout": used,
                    "neurozoo_version": neurozoo.__version__,
                    "seconds": seconds,
                })
    finally:
        _finish(module, formats)
    index = {
        "model": loaded.provenance(),
        "stimuli_sha256": stim_id,
        "stimulus_ids": [str(s) for s in stimuli.stimulus_ids],
        "neurozoo_version": neurozoo.__version__,
        "layers": [
            {"layer": nm, "file": paths(nm)[0].name, "shape": [n, sizes[nm]],
             "layer_shape": list(shape),
             "index": default_names.index(nm) if nm in default_names else -1,
             "relative_depth": (default_names.index(nm) / n_default
                                if nm in default_names else float("nan"))}
            for nm, shape in chosen
        ],
    }
    write_json(out_dir / INDEX_NAME, index)
    return index


def _write_pass(module, todo, sizes, images, batch_size, dev, out_dir, paths,
                progress, model_id) -> None:
    """One forward pass that streams the outputs of ``todo`` into files."""
    n = images.shape[0]
    partial = {nm: out_dir / f".{paths(nm)[0].name}.partial" for nm in todo}
    fds: dict[str, int] = {}
    offsets: dict[str, int] = {}
    state = {"lo": 0, "left": set()}
    mods = dict(module.named_modules())

    def hook(name):
        def fn(_m, _inp, out):
            flat = out.reshape(out.shape[0], -1)
            rows = flat.detach().to("cpu", torch.float32).numpy()
            want = (min(batch_size, n - state["lo"]), sizes[name])
            if rows.shape != want:  # the probe image's shape said otherwise
                raise NeurozooError(
                    f"{model_id}, layer {name}: a batch of {want[0]} stimuli gave an "
                    f"output of {tuple(out.shape)}, not {want[0]} rows of {want[1]} "
                    "features (its first dimension is not the stimulus): choose "
                    "another layer")
            # outputs are written as the hook runs: an in-place operation later
            # in the pass cannot reach them
            _pwrite_all(fds[name], rows, offsets[name] + 4 * state["lo"] * sizes[name])
            state["left"].discard(name)
            if not state["left"]:
                raise _Stop
        return fn

    for stale in out_dir.glob(".*.npy.partial"):  # left by a killed run
        log.info("removing %s, left by an earlier run that was stopped", stale)
        stale.unlink(missing_ok=True)
    handles = []
    ok = False
    try:
        for nm in todo:
            header = _header(n, sizes[nm])
            fds[nm] = os.open(partial[nm], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
            _pwrite_all(fds[nm], np.frombuffer(header, dtype=np.uint8), 0)
            os.ftruncate(fds[nm], len(header) + 4 * n * sizes[nm])
            offsets[nm] = len(header)
        handles = [mods[nm].register_forward_hook(hook(nm)) for nm in todo]
        with torch.inference_mode(), exact_float32(dev):
            for lo in tqdm(range(0, n, batch_size), disable=not progress, leave=False,
                           desc=f"{model_id} [raw features]"):
                state.update(lo=lo, left=set(todo))
                try:
                    module(images[lo: lo + batch_size].to(dev))
                except _Stop:
                    pass
        ok = True
    finally:
        for h in handles:
            h.remove()
        for fd in fds.values():
            os.close(fd)
        for nm, tmp in partial.items():
            if ok:
                os.replace(tmp, paths(nm)[0])
            else:
                tmp.unlink(missing_ok=True)


def load_features(folder: str | os.PathLike, layers: list[str] | None = None,
                  mmap: bool = True) -> tuple[dict, dict[str, np.ndarray]]:
    """Open the raw features that :func:`save_features` wrote.

    Parameters
    ----------
    folder : path
        A folder with ``features.json``.
    layers : list of str, optional
        Default: every layer in the index.
    mmap : bool
        Memory-map the files (read-only) instead of reading them.

    Returns
    -------
    index : dict
        The folder's ``features.json`` (``stimulus_ids`` gives the row order).
    features : dict of layer name -> ndarray, shape (n_stimuli, n_features)
    """
    folder = Path(folder)
    index_file = folder / INDEX_NAME
    if not index_file.is_file():
        raise NeurozooError(f"{folder}: no {INDEX_NAME}; write the features with "
                            "save_features (or `neurozoo run --save-features`) first")
    try:
        index = read_json(index_file)
        entries = {e["layer"]: e for e in index["layers"]}
        valid = all({"file", "shape"} <= set(e) for e in entries.values())
    except (ValueError, KeyError, TypeError) as exc:
        valid, entries = False, {}
        reason = repr(exc)
    else:
        reason = "an entry without 'file' or 'shape'"
    if not valid:
        raise NeurozooError(f"{index_file}: not a valid index ({reason}); save the "
                            "features again")
    names = list(entries) if layers is None else list(layers)
    unknown = [nm for nm in names if nm not in entries]
    if unknown:
        raise NeurozooError(f"{index_file}: no layer {', '.join(unknown)}; it holds "
                            f"{', '.join(entries)}")
    out = {}
    for nm in names:
        path = folder / entries[nm]["file"]
        try:
            arr = np.load(path, mmap_mode="r" if mmap else None)
        except (OSError, ValueError) as exc:
            raise NeurozooError(f"{path}: not a readable .npy file ({exc}); "
                                "save the features again") from exc
        if list(arr.shape) != entries[nm]["shape"] or arr.dtype != np.float32:
            raise NeurozooError(f"{path}: shape {arr.shape} {arr.dtype}, but the index "
                                f"says {tuple(entries[nm]['shape'])} float32")
        out[nm] = arr
    return index, out
