"""Per-layer summaries of a network's response to a stimulus set.

For ``n`` stimuli and a layer with ``p`` features, every linear mapping
method of neurozoo needs only

- the Gram matrix ``K = X X^T``, shape (n, n), accumulated in float64, and
- the row sums ``s = X 1``, shape (n,), and ``p``

where ``X`` (n, p) holds the flattened layer outputs. Ridge regression in its
dual form, its exact leave-one-out errors, RDMs from correlation distance and
linear CKA all follow from ``(K, s, p)``.

Extraction keeps memory bounded: the layers are split into groups whose
activations for all stimuli fit ``memory_budget`` bytes (a layer larger than
the budget is cut into feature blocks, one pass each). For each group the
network runs over the stimulus batches, up to the group's last layer only.
A layer's batch outputs are kept as they are when nothing modifies them
later (a one-image probe reads the tensors' version counters, and the
counters are checked again after the pass); an output that is overwritten in
place (a convolution followed by an in-place ReLU) is copied into a float32
buffer as its hook runs. Each layer is then reduced to ``(K, s)`` in float64
(cache-sized column chunks, symmetric rank-k updates shared among threads)
and freed. With the default budget the whole default zoo on the 118 bundled
images runs in one or a few passes per model. The result is exact: there is
no random projection.

Default layers
--------------
Walk the module tree from the root: ``nn.Sequential``/``ModuleList``
containers (and the root) are opened; any other module is a *layer*, whether
a leaf (conv, norm, activation, pooling, linear) or a block with children
(a residual or inverted-residual block). Dropout, Identity and Flatten are
skipped, as are modules that never run or run more than once per forward
pass (a shared activation module has no single output). Layers are ordered by
execution; a layer's relative depth is its index over (number of layers - 1).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from neurozoo.data.stimuli import StimulusSet
from neurozoo.errors import NeurozooError
from neurozoo.io import atomic_path, stable_hash

__all__ = [
    "LayerSummary",
    "candidate_layers",
    "default_layers",
    "resolve_device",
    "preprocess_stimuli",
    "gram_from_features",
    "gram_rowsum_from_features",
    "gram_rowsum_many",
    "extract_summaries",
    "LayerProjection",
    "extract_projections",
    "extract_auto",
    "exact_float32",
    "LAYOUTS",
    "choose_layout",
    "MAX_GRAM_STIMULI",
    "summary_key",
    "projection_key",
    "EXTRACTION_VERSION",
]

log = logging.getLogger(__name__)

#: Bumped when the meaning of cached summaries changes.
EXTRACTION_VERSION = 1
_SKIP = (nn.Dropout, nn.Dropout2d, nn.Dropout1d, nn.Dropout3d, nn.AlphaDropout,
         nn.Identity, nn.Flatten)


def _write_npz(path: str | os.PathLike, meta: dict, **fields) -> None:
    """``fields`` and ``meta`` (as JSON text) to an ``.npz``, atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, meta=json.dumps(meta, sort_keys=True), **fields)


_NPZ_MAGIC = b"PK\x03\x04"  # an .npz is a zip archive


def _read_npz(path: str | os.PathLike, build):
    """``build(fields)`` of the cache entry ``path``, a dict of its arrays.

    Any failure (not an archive, truncated, a field missing or malformed, a
    check in ``build``) raises :class:`NeurozooError` saying that the entry
    is corrupt and naming it. numpy's own message for a file that is not an
    archive ("contains pickled data") would mislead.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            if f.read(len(_NPZ_MAGIC)) != _NPZ_MAGIC:
                raise NeurozooError(
                    f"cache entry {path} is corrupt: not an .npz archive")
        with np.load(path, allow_pickle=False) as z:
            fields = {k: z[k] for k in z.files}
        return build(fields)
    except NeurozooError:  # already names the entry
        raise
    except OSError as exc:
        raise NeurozooError(f"cache entry {path} is unreadable ({exc})") from None
    except KeyError as exc:
        raise NeurozooError(f"cache entry {path} is corrupt: no field {exc}") from None
    except Exception as exc:  # zipfile, zlib and numpy raise many types
        raise NeurozooError(
            f"cache entry {path} is corrupt ({type(exc).__name__}: {exc})") from None


def _made_with(dev: torch.device, batch_size: int, layout: str) -> dict:
    """The run-dependent part of a cache entry's meta: one record per
    extraction call, shared by its layers."""
    import datetime

    import neurozoo

    return {"version": EXTRACTION_VERSION, "device": str(dev), "batch_size": int(batch_size),
            "layout": layout, "neurozoo_version": neurozoo.__version__,
            "created_utc": datetime.datetime.now(datetime.UTC)
            .isoformat(timespec="seconds")}


def _as_json(meta: dict) -> dict:
    """``meta`` as it reads back from JSON (tuples become lists...), so that a
    fresh entry's meta equals the one :meth:`LayerSummary.load` returns."""
    return json.loads(json.dumps(meta))


def _meta(fields: dict) -> dict:
    """The JSON ``meta`` of a cache entry; an entry without one (or with a
    broken one) is still usable, so this gives an empty dict then."""
    try:
        meta = json.loads(str(fields["meta"]))
    except (KeyError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


@dataclass
class LayerSummary:
    """What the mapping needs of one layer.

    Attributes
    ----------
    layer : str
        Module name in the network.
    gram : ndarray, shape (n_stimuli, n_stimuli), float64
        ``X X^T`` of the flattened layer output ``X``.
    rowsum : ndarray, shape (n_stimuli,), float64
        ``X 1``: the sum of each stimulus's features.
    n_features : int
        ``p``, the number of features.
    shape : tuple of int
        Output shape of one stimulus, e.g. (64, 56, 56).
    index : int
        Execution order among the extracted layers.
    relative_depth : float
        ``index / (n_layers - 1)`` within the default layer list.
    meta : dict
        How it was made (model, device, batch size, neurozoo version...): what
        :meth:`save` wrote beside it, read back by :meth:`load`, so that a
        summary reused from the cache reports the run that made it.
    """

    layer: str
    gram: np.ndarray
    rowsum: np.ndarray
    n_features: int
    shape: tuple
    index: int
    relative_depth: float
    meta: dict = field(default_factory=dict, compare=False, repr=False)

    def save(self, path: str | os.PathLike, meta: dict) -> None:
        """Write to ``.npz`` atomically, with ``meta`` (JSON text) beside."""
        self.meta = _as_json(meta)
        _write_npz(path, meta, gram=self.gram, rowsum=self.rowsum,
                   n_features=self.n_features, shape=np.asarray(self.shape),
                   index=self.index, relative_depth=self.relative_depth,
                   layer=self.layer)

    @classmethod
    def load(cls, path: str | os.PathLike) -> LayerSummary:
        """Read a summary written by :meth:`save`.

        Raises :class:`NeurozooError` naming the file when it is corrupt.
        """
        def build(z):
            out = cls(
                layer=str(z["layer"]), gram=z["gram"], rowsum=z["rowsum"],
                n_features=int(z["n_features"]), shape=tuple(int(x) for x in z["shape"]),
                index=int(z["index"]), relative_depth=float(z["relative_depth"]),
                meta=_meta(z),
            )
            check_gram(out.gram, f"cache entry {path} is corrupt")
            return out

        return _read_npz(path, build)


def check_gram(gram: np.ndarray, source: str = "gram") -> None:
    """Reject a Gram matrix that is not square, finite and symmetric."""
    if gram.ndim != 2 or gram.shape[0] != gram.shape[1]:
        raise NeurozooError(f"{source}: Gram matrix has shape {gram.shape}, not square")
    if not np.isfinite(gram).all():
        raise NeurozooError(f"{source}: Gram matrix has non-finite entries")
    scale = max(float(np.abs(gram).max()), 1e-300)
    if float(np.abs(gram - gram.T).max()) > 1e-9 * scale:
        raise NeurozooError(f"{source}: Gram matrix is not symmetric")


def resolve_device(device: str | None = None) -> torch.device:
    """``None``/``"auto"``: the GPU when there is one, else the CPU."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise NeurozooError(f"device '{device}' is not a torch device ({exc})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise NeurozooError("device 'cuda' requested but no GPU is available")
    return dev


def candidate_layers(module: nn.Module) -> list[str]:
    """Module names by the default rule (before the execution probe)."""
    out: list[str] = []

    def visit(prefix: str, m: nn.Module, is_root: bool) -> None:
        children = list(m.named_children())
        if is_root or isinstance(m, (nn.Sequential, nn.ModuleList, nn.ModuleDict)):
            for name, child in children:
                visit(f"{prefix}.{name}" if prefix else name, child, False)
        elif not isinstance(m, _SKIP):
            out.append(prefix)

    visit("", module, True)
    return out


def _probe(module: nn.Module, names: list[str], x: torch.Tensor,
           output: dict | None = None) -> dict[str, dict]:
    """Run one input; record each named module's call count and output shape,
    and whether the rest of the pass modifies its output in place. The
    network's own output goes to ``output["value"]`` when ``output`` is given.

    The pass runs without autograd but not in inference mode, so version
    counters are kept: an output whose counter changes after its hook has run
    is overwritten later (an in-place ReLU after a convolution, say).
    """
    mods = dict(module.named_modules())
    info: dict[str, dict] = {}
    order: list[str] = []
    outputs: dict[str, tuple[torch.Tensor, int]] = {}
    handles = []

    def hook(name):
        def fn(_m, _inp, out):
            rec = info.setdefault(name, {"calls": 0, "shape": None})
            rec["calls"] += 1
            if rec["calls"] == 1:
                order.append(name)
                if torch.is_tensor(out):
                    rec["shape"] = tuple(out.shape[1:])
                    outputs[name] = (out, out._version)
        return fn

    for n in names:
        if n not in mods:
            raise NeurozooError(
                f"unknown layer '{n}' (see `neurozoo layers MODEL` for valid names)"
            )
        handles.append(mods[n].register_forward_hook(hook(n)))
    try:
        with torch.no_grad():
            result = module(x)
    finally:
        for h in handles:
            h.remove()
    if output is not None:
        output["value"] = result
    for name, (out, version) in outputs.items():
        info[name]["modified"] = out._version != version
    return {n: {"modified": False, **info[n], "order": order.index(n)} for n in order}


def modified_in_place(module: nn.Module, names: list[str], x: torch.Tensor) -> set[str]:
    """Layers whose output the rest of the forward pass modifies in place.

    One forward pass on ``x`` (see :func:`_probe`): an output that is
    overwritten later must be copied by extraction; the others are kept as
    they are.
    """
    return {nm for nm, rec in _probe(module, names, x).items() if rec["modified"]}


def default_layers(module: nn.Module, example: torch.Tensor) -> list[tuple[str, tuple]]:
    """The default layers, in execution order, with their output shapes.

    Parameters
    ----------
    module : nn.Module
    example : Tensor, shape (1, 3, H, W)
        A preprocessed input used for one probe forward pass.

    Returns
    -------
    list of (name, shape)
    """
    return _default_from_probe(_probe(module, candidate_layers(module), example))


def _default_from_probe(probed: dict[str, dict]) -> list[tuple[str, tuple]]:
    out = []
    for name, rec in probed.items():
        if rec["shape"] is None:
            log.debug("skip %s: output is not a tensor", name)
        elif rec["calls"] != 1:
            log.debug("skip %s: runs %d times per forward pass", name, rec["calls"])
        else:
            out.append((name, rec["shape"]))
    return out


def preprocess_stimuli(stimuli: StimulusSet, preprocessing,
                       workers: int | None = None) -> torch.Tensor:
    """Load and preprocess every stimulus.

    Each image is written into one preallocated tensor as it is processed
    (stacking a list would hold every image twice at the end). Images are
    decoded and resized by ``workers`` threads (default: torch's thread
    count); Pillow releases the GIL while it decodes and resamples, so they
    run in parallel. The result does not depend on ``workers``.

    Returns
    -------
    Tensor, shape (n_stimuli, 3, H, W), float32
    """
    from concurrent.futures import ThreadPoolExecutor

    n = len(stimuli)
    if n == 0:
        raise NeurozooError("the stimulus set is empty")
    first = preprocessing(stimuli.load_image(0))
    out = torch.empty((n, *first.shape), dtype=first.dtype)
    out[0] = first

    def fill(i: int) -> None:
        image = preprocessing(stimuli.load_image(i))
        if image.shape != out.shape[1:]:
            raise NeurozooError(
                f"stimulus {stimuli.stimulus_ids[i]}: preprocessed to shape "
                f"{tuple(image.shape)}, not {tuple(out.shape[1:])} like the first")
        out[i] = image

    workers = max(1, min(workers or torch.get_num_threads(), n - 1, 16))
    if workers == 1:
        for i in range(1, n):
            fill(i)
    else:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(fill, range(1, n)))  # re-raises the first error
    return out


def gram_from_features(x: torch.Tensor, chunk_bytes: int = 1 << 22) -> torch.Tensor:
    """``X X^T`` in float64, computed over column chunks of ``X``.

    Parameters
    ----------
    x : Tensor, shape (n, p)

    Returns
    -------
    Tensor, shape (n, n), float64
    """
    return gram_rowsum_from_features(x, chunk_bytes)[0]


def _chunk_columns(n: int, p: int, chunk_bytes: int) -> int:
    """Columns per float64 chunk: ``chunk_bytes`` worth, at least 256."""
    return max(1, min(p, max(256, chunk_bytes // (8 * max(n, 1)))))


def gram_rowsum_from_features(x: torch.Tensor | list[torch.Tensor],
                              chunk_bytes: int = 1 << 22
                              ) -> tuple[torch.Tensor, torch.Tensor]:
    """``X X^T`` and ``X 1`` in float64 in one pass over column chunks.

    Each chunk of columns is converted to float64 once and serves both sums;
    no float64 copy of the whole ``X`` is made. Products of float32 values
    are exact in float64, so the only rounding is that of the float64 sums.
    See :func:`gram_rowsum_many`, which does this for several layers at once.

    Parameters
    ----------
    x : Tensor, shape (n, p), or list of Tensor
        The features, or consecutive row blocks of them (for example the
        stimulus batches of a layer), each of shape (n_i, p).
    chunk_bytes : int
        Size of one float64 chunk.

    Returns
    -------
    gram : Tensor, shape (n, n), float64, exactly symmetric
    rowsum : Tensor, shape (n,), float64
    """
    return gram_rowsum_many([x], chunk_bytes)[0]


def _row_blocks(x) -> list[torch.Tensor]:
    blocks = list(x) if isinstance(x, (list, tuple)) else [x]
    if len({b.shape[1] for b in blocks}) != 1 or any(b.ndim != 2 for b in blocks):
        raise NeurozooError("row blocks of features must be 2-d with equal columns")
    return blocks


def gram_rowsum_many(layers: list, chunk_bytes: int = 1 << 22
                     ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """:func:`gram_rowsum_from_features` for several layers in one pass.

    On the CPU the column chunks of every layer are shared among
    ``torch.get_num_threads()`` threads at once, so that small layers (one
    chunk) do not leave threads idle. Each chunk is converted to float64
    below a row of ones, and its symmetric rank-k update (BLAS ``syrk``
    through numpy, half the operations of a general product; it releases the
    GIL) yields the Gram matrix and, in the extra row, the row sums: one pass
    over the chunk instead of two. The chunks are small enough to stay in
    cache (4 MB by default: faster than 2 or 8 MB on AlexNet's layers on
    this project's machine). Together these made the Gram matrices of
    AlexNet's 19 default layers 24% faster than one layer at a time with a
    separate row sum. On a GPU each chunk is an ``addmm``.

    Parameters
    ----------
    layers : list
        Per layer, a Tensor of shape (n, p) or a list of row blocks; every
        layer has the same n.
    chunk_bytes : int
        Size of one float64 chunk.

    Returns
    -------
    list of (gram, rowsum): float64 Tensors of shapes (n, n), exactly
    symmetric, and (n,), in the order of ``layers``
    """
    items = [_row_blocks(x) for x in layers]
    if not items:
        return []
    ns = {sum(b.shape[0] for b in blocks) for blocks in items}
    if len(ns) != 1:
        raise NeurozooError(f"layers have different numbers of rows: {sorted(ns)}")
    n = ns.pop()
    if items[0][0].device.type != "cpu":
        return [_gram_rowsum_device(blocks, n, chunk_bytes) for blocks in items]
    from concurrent.futures import ThreadPoolExecutor

    from neurozoo.mapping.backend import SMALL_N, small_problem_threads

    arrays = []
    for blocks in items:
        arrays.append([(b if b.dtype in (torch.float32, torch.float64)  # half, ints...
                        else b.float()).detach().numpy() for b in blocks])
    # where each row block starts and ends, per layer (layers may differ)
    edges = [np.cumsum([0] + [a.shape[0] for a in blocks]).tolist() for blocks in arrays]
    tasks = []  # (layer, first column, width)
    for li, blocks in enumerate(items):
        p = blocks[0].shape[1]
        step = _chunk_columns(n + 1, p, chunk_bytes)
        tasks += [(li, start, min(step, p - start)) for start in range(0, p, step)]
    widest = max((width for _, _, width in tasks), default=1)
    # Small n: the chunks are shared among threads that each call
    # single-threaded BLAS (see small_problem_threads: a multithreaded BLAS on
    # updates this small mostly synchronises). Large n: BLAS's own threads.
    workers = max(1, min(torch.get_num_threads(), len(tasks))) if n <= SMALL_N else 1

    # Each worker takes a contiguous run of tasks (layer by layer) of about
    # equal total width, so that it holds the sums of only the few layers its
    # run touches (at most len(layers) + workers - 1 (n+1)^2 arrays in all),
    # not one per layer per worker.
    ends = np.cumsum([width for _, _, width in tasks])
    cuts = np.searchsorted(ends, ends[-1] * np.arange(1, workers) / workers) if tasks \
        else np.zeros(workers - 1, dtype=int)
    runs = np.split(np.arange(len(tasks)), cuts)

    def accumulate(first: int) -> dict[int, np.ndarray]:
        sums: dict[int, np.ndarray] = {}
        block = np.empty((n + 1, widest), dtype=np.float64)
        for li, start, width in (tasks[t] for t in runs[first]):
            b = block[:, :width]
            b[n] = 1.0
            for a, r0, r1 in zip(arrays[li], edges[li][:-1], edges[li][1:]):
                np.copyto(b[r0:r1], a[:, start: start + width])
            # numpy computes b @ b.T as a symmetric rank-k update (BLAS syrk)
            # and releases the GIL while it runs, so threads run in parallel.
            if li in sums:
                sums[li] += b @ b.T
            else:
                sums[li] = b @ b.T
        return sums

    with small_problem_threads(torch.device("cpu"), n):
        if workers == 1:
            parts = [accumulate(0)]
        else:
            with ThreadPoolExecutor(workers) as pool:
                parts = list(pool.map(accumulate, range(workers)))
    out = []
    for li in range(len(items)):
        full = sum((part[li] for part in parts if li in part),
                   np.zeros((n + 1, n + 1)))  # zeros: a layer with no columns
        gram = full[:n, :n]
        out.append((torch.from_numpy((gram + gram.T) / 2),
                    torch.from_numpy(np.ascontiguousarray(full[n, :n]))))
    return out


def _gram_rowsum_device(blocks: list[torch.Tensor], n: int, chunk_bytes: int
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """The GPU path of :func:`gram_rowsum_many`: one layer, ``addmm`` per chunk."""
    x = torch.cat(blocks) if len(blocks) > 1 else blocks[0]
    p = x.shape[1]
    step = _chunk_columns(n, p, chunk_bytes)
    gram = torch.zeros((n, n), dtype=torch.float64, device=x.device)
    rowsum = torch.zeros(n, dtype=torch.float64, device=x.device)
    for start in range(0, p, step):
        block = x[:, start: start + step].to(torch.float64)
        gram.addmm_(block, block.T)
        rowsum += block.sum(dim=1)
    return (gram + gram.T) / 2, rowsum


@contextlib.contextmanager
def exact_float32(device: torch.device):
    """Full float32 precision for convolutions and matrix products on a GPU.

    PyTorch lets cuDNN run float32 convolutions in TF32 (10-bit mantissa) on
    Ampere and newer GPUs by default, which would make GPU features differ
    from CPU features by about 1e-3 relative. Extraction turns that off for
    its duration and restores the previous settings afterwards. On the CPU
    this does nothing.
    """
    if device.type != "cuda":
        yield
        return
    if hasattr(getattr(torch.backends.cudnn, "conv", None), "fp32_precision"):
        # the precision API of torch >= 2.9 (mixing it with allow_tf32 is an error)
        knobs = [torch.backends.cudnn.conv, torch.backends.cudnn.rnn,
                 torch.backends.cuda.matmul]
        old = [k.fp32_precision for k in knobs]
        for k in knobs:
            k.fp32_precision = "ieee"
        try:
            yield
        finally:
            for k, value in zip(knobs, old):
                k.fp32_precision = value
        return
    old = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


#: Memory layouts extraction can run a network in (``layout`` argument).
LAYOUTS = ("auto", "channels_last", "contiguous")


def choose_layout(module: nn.Module, device: torch.device, layout: str = "auto") -> str:
    """The memory layout extraction runs ``module`` in on ``device``.

    ``"auto"`` is ``"channels_last"`` on the CPU for a network with 2-d
    convolutions and ``"contiguous"`` otherwise. On this project's 2-core
    CPU, oneDNN's channels-last convolutions made the forward passes of the
    default zoo 1.2 to 2.6 times faster (AlexNet 1.45, ResNet-50 1.24,
    MobileNetV2 2.2, EfficientNet-Lite0 2.6; ``benchmarks/mapping.py``
    measures AlexNet's every run). On a GPU it is contiguous (channels-last
    was not measured here). ``"contiguous"`` also lays out a network that
    arrives channels-last contiguously for the call.

    The layout changes the float32 rounding of the features (by about 1e-6
    relative), not their meaning; summaries, projections and raw features
    from one call all come from the same pass layout.
    """
    if layout not in LAYOUTS:
        raise NeurozooError(f"unknown layout '{layout}': expected one of "
                            f"{', '.join(LAYOUTS)}")
    if layout != "auto":
        return layout
    convs = any(isinstance(m, nn.Conv2d) for m in module.modules())
    return "channels_last" if device.type == "cpu" and convs else "contiguous"


def _is_channels_last(t: torch.Tensor) -> bool:
    """A 4-d tensor laid out channels-last and not also plainly contiguous."""
    return (t.dim() == 4 and not t.is_contiguous()
            and t.is_contiguous(memory_format=torch.channels_last))


def _close(ref, got) -> bool:
    """Whether two forward outputs (tensors, or tuples, lists or dicts of
    them) agree to within 1e-3 of each tensor's largest value: far above the
    float32 rounding of another summation order (about 1e-6 here), far below
    a network that computes something else. Other outputs are not compared."""
    if torch.is_tensor(ref):
        if not torch.is_tensor(got) or ref.shape != got.shape:
            return False
        scale = float(ref.abs().max()) if ref.numel() else 0.0
        return bool(((ref.float() - got.float()).abs() <= 1e-3 * scale + 1e-6).all())
    if isinstance(ref, (tuple, list)):
        return (isinstance(got, (tuple, list)) and len(ref) == len(got)
                and all(_close(a, b) for a, b in zip(ref, got)))
    if isinstance(ref, dict):
        return (isinstance(got, dict) and ref.keys() == got.keys()
                and all(_close(ref[k], got[k]) for k in ref))
    return True  # not a tensor: nothing to compare


def _formats(module: nn.Module) -> dict[str, torch.memory_format]:
    """The memory format of each 4-d parameter and buffer of ``module``:
    channels-last when it is laid out so and not also plainly contiguous (a
    1x1 or depthwise kernel is both), else contiguous."""
    tensors = [*module.named_parameters(), *module.named_buffers()]
    return {name: (torch.channels_last if _is_channels_last(t) else torch.contiguous_format)
            for name, t in tensors if t.dim() == 4}


def _set_formats(module: nn.Module, formats: dict[str, torch.memory_format]) -> None:
    """Lay each 4-d parameter and buffer named in ``formats`` out in its format."""
    tensors = dict([*module.named_parameters(), *module.named_buffers()])
    with torch.no_grad():
        for name, fmt in formats.items():
            t = tensors.get(name)
            if t is not None and not t.is_contiguous(memory_format=fmt):
                t.data = t.data.contiguous(memory_format=fmt)


def _apply_layout(loaded, module: nn.Module, example: torch.Tensor, ref,
                  dev: torch.device, layout: str) -> tuple[str, dict | None]:
    """Put ``module`` in the layout :func:`choose_layout` picks.

    Channels-last is checked on ``example`` (one image): the network must
    run and give ``ref``, the output it gives in its own layout, to within
    1e-3 of its largest value (an output that is not a tensor, or a tuple,
    list or dict of them, is not compared). When it does not, an explicit
    ``"channels_last"`` is an error and ``"auto"`` falls back to the
    contiguous layout, with a warning. Returns the layout used and the
    formats of the caller's 4-d weights, for :func:`_finish` to restore.
    Whatever happens, including an interrupt, the network is not left half
    converted.
    """
    chosen = choose_layout(module, dev, layout)
    before = _formats(module)
    want = torch.channels_last if chosen == "channels_last" else torch.contiguous_format
    if chosen == "contiguous":
        _set_formats(module, {name: want for name in before})
        return chosen, before
    try:
        with torch.no_grad():
            _set_formats(module, {name: want for name in before})
            try:
                got = module(example.contiguous(memory_format=torch.channels_last))
                problem = None if _close(ref, got) else "its output differs"
            except Exception as exc:  # any failure means: not this layout
                first = (str(exc).splitlines() or [""])[0]
                problem = f"it fails ({type(exc).__name__}: {first})"
    except BaseException:
        _set_formats(module, before)
        raise
    if problem is None:
        return chosen, before
    message = f"{loaded.spec.model_id} cannot run channels-last: {problem}"
    if layout == "channels_last":
        _set_formats(module, before)
        raise NeurozooError(message + "; use layout 'contiguous' or 'auto'")
    log.warning("%s; running it contiguous", message)
    _set_formats(module, {name: torch.contiguous_format for name in before})
    return "contiguous", before


def _finish(module: nn.Module, formats: dict) -> None:
    """Undo what :func:`_start` did to the caller's network: each 4-d weight
    back in its own format (a no-op for those already in it), the network
    back on the CPU."""
    _set_formats(module, formats)
    module.to("cpu")


def _flat(out: torch.Tensor) -> torch.Tensor:
    """``out`` as (batch, features), without a copy where the layout allows.

    A channels-last output is flattened in its memory order (height, width,
    channel): a permutation of the usual (channel, height, width) order,
    which a Gram matrix and row sums do not see. Within one extraction call
    every pass flattens a layer the same way, so feature blocks stay
    consistent. Projections and raw features keep the usual order.
    """
    if _is_channels_last(out):
        return out.permute(0, 2, 3, 1).reshape(out.shape[0], -1)
    return out.reshape(out.shape[0], -1)


class _Stop(Exception):
    pass


def _buffer(shape: tuple[int, int], device: torch.device) -> torch.Tensor:
    """An uninitialised float32 activation buffer.

    On the CPU it is allocated by numpy, which asks Linux for transparent
    huge pages on large arrays: filling fresh memory then takes 512 times
    fewer page faults than with torch's allocator (measured: 0.02 s against
    0.1-0.4 s for 512 MB).
    """
    if device.type == "cpu":
        return torch.from_numpy(np.empty(shape, dtype=np.float32))
    return torch.empty(shape, dtype=torch.float32, device=device)


def summary_key(weights_sha256: str, preprocessing: dict, stimuli_id: str,
                layer: str, architecture: str = "") -> str:
    """Cache key of one layer's summary.

    ``architecture`` is ``SOURCE:ARCH`` plus the versions of torch and the
    model libraries: two architectures may share parameters but not their
    forward code (timm's ``tf_`` variants pad differently).
    """
    return stable_hash({
        "weights": weights_sha256, "preprocessing": preprocessing,
        "stimuli": stimuli_id, "layer": layer, "version": EXTRACTION_VERSION,
        "architecture": architecture,
    }, length=24)


def architecture_tag(loaded) -> str:
    """``SOURCE:ARCH``, library versions and the transforms that change
    modules (``+kwta:0.1``): the code part of a cache key."""
    import timm
    import torchvision

    from neurozoo.models.transforms import code_transforms

    tag = (f"{loaded.spec.source}:{loaded.spec.arch}|torch {torch.__version__}|"
           f"torchvision {torchvision.__version__}|timm {timm.__version__}")
    code = code_transforms(loaded.spec.transforms)
    return tag + ("|" + "+".join(code) if code else "")


def _groups(layers: list[tuple[str, tuple]], n: int,
            budget: int) -> list[list[tuple[str, int, int]]]:
    """Split layers into passes whose buffers fit ``budget`` bytes.

    Each item is ``(layer, start, stop)``: a block of the layer's flattened
    features. A layer larger than the budget is cut into feature blocks, one
    pass each; the Gram matrix is additive over feature blocks, so the result
    stays exact, at the price of rerunning the network up to that layer.
    """
    budget = max(budget, n * 4 * 1024)  # blocks of at least 1,024 features
    groups: list[list[tuple[str, int, int]]] = []
    current: list[tuple[str, int, int]] = []
    used = 0
    for name, shape in layers:
        p = int(np.prod(shape))
        size = n * p * 4
        if size > budget:
            if current:
                groups.append(current)
                current, used = [], 0
            n_blocks = int(np.ceil(size / budget))
            edges = np.linspace(0, p, n_blocks + 1).round().astype(int)
            groups.extend([[(name, int(a), int(b))] for a, b in zip(edges[:-1], edges[1:])])
            continue
        if current and used + size > budget:
            groups.append(current)
            current, used = [], 0
        current.append((name, 0, p))
        used += size
    if current:
        groups.append(current)
    return groups


def _resolve_layers(loaded, module: nn.Module, example: torch.Tensor,
                    layers: list[str] | None, output: dict | None = None):
    """The default layer names, the chosen ``(name, shape)`` pairs in
    execution order (the default layers when ``layers`` is None), and the
    chosen layers whose outputs are modified in place; one probe pass (its
    output to ``output["value"]``, see :func:`_probe`)."""
    candidates = candidate_layers(module)
    extra = [nm for nm in dict.fromkeys(layers or []) if nm not in set(candidates)]
    probed = _probe(module, candidates + extra, example, output)
    all_default = _default_from_probe({nm: probed[nm] for nm in candidates
                                       if nm in probed})
    default_names = [name for name, _ in all_default]
    if layers is None:
        chosen = all_default
    else:
        for name in layers:
            if name not in probed:
                raise NeurozooError(f"layer '{name}' of {loaded.spec.model_id} never runs")
            if probed[name]["calls"] != 1 or probed[name]["shape"] is None:
                raise NeurozooError(
                    f"layer '{name}' of {loaded.spec.model_id} runs "
                    f"{probed[name]['calls']} times per forward pass or returns no "
                    "tensor: choose another"
                )
        chosen = sorted(((nm, probed[nm]["shape"]) for nm in dict.fromkeys(layers)),
                        key=lambda t: probed[t[0]]["order"])
    modified = {nm for nm, _ in chosen if probed[nm]["modified"]}
    return default_names, chosen, modified


def _start(loaded, stimuli: StimulusSet, device: str | None,
           layers: list[str] | None, layout: str = "auto"):
    """What every extraction starts with: the device, the module on it in the
    layout it runs in (:func:`choose_layout`), the preprocessed images in that
    layout, and from one probe pass the default layer names, the chosen
    ``(name, shape)`` pairs and the chosen layers modified in place; then the
    layout used and the caller's weight formats to restore (for :func:`_finish`)."""
    dev = resolve_device(device)
    choose_layout(loaded.module, dev, layout)  # an unknown name fails before work
    module = loaded.module.to(dev)
    images = preprocess_stimuli(stimuli, loaded.preprocessing)
    example = images[:1].to(dev)
    probe_output: dict = {}
    default_names, chosen, modified = _resolve_layers(loaded, module, example, layers,
                                                      probe_output)
    used, formats = _apply_layout(loaded, module, example, probe_output["value"], dev,
                                  layout)
    if used == "channels_last":
        try:
            images = images.contiguous(memory_format=torch.channels_last)
        except BaseException:
            _finish(module, formats)
            raise
    return dev, module, images, default_names, chosen, modified, used, formats


def _run_group(module: nn.Module, mods: dict, group: list[tuple[str, int, int]],
               shapes: dict, images: torch.Tensor, batch_size: int, dev: torch.device,
               copy: set[str], progress: bool, model_id: str) -> dict:
    """One pass over the stimulus batches for one group of layers.

    Returns, per ``(layer, start)``, the layer's features ``start:stop`` for
    all stimuli: a float32 buffer, or the list of the batch outputs
    themselves when the layer is whole and not modified in place (checked
    again after the pass by the version counters; a modified output makes
    the pass rerun with copies).
    """
    n = images.shape[0]
    names = [item[0] for item in group]
    whole = {nm for nm, a, b in group if (a, b) == (0, int(np.prod(shapes[nm])))}
    keep = whole - copy
    buffers: dict = {(nm, a): [] if nm in keep else _buffer((n, b - a), dev)
                     for nm, a, b in group}
    versions: list[tuple[torch.Tensor, int]] = []
    state = {"lo": 0, "hi": 0, "left": set(names)}

    def hook(name, start, stop):
        def fn(_m, _inp, out):
            flat = _flat(out)
            if name in keep:
                buffers[(name, start)].append(flat)
                versions.append((out, out._version))
            else:
                buffers[(name, start)][state["lo"]: state["hi"]] = flat[:, start:stop]
            state["left"].discard(name)
            if not state["left"]:
                raise _Stop
        return fn

    handles = [mods[nm].register_forward_hook(hook(nm, a, b)) for nm, a, b in group]
    block = "" if names[0] in whole else f" features {group[0][1]}:{group[0][2]}"
    bar = tqdm(range(0, n, batch_size), disable=not progress, leave=False,
               desc=f"{model_id} [{names[0]}..{names[-1]}{block}]")
    try:
        with torch.no_grad(), exact_float32(dev):  # no_grad: versions are kept
            for lo in bar:
                hi = min(lo + batch_size, n)
                state.update(lo=lo, hi=hi, left=set(names))
                try:
                    module(images[lo:hi].to(dev))
                except _Stop:
                    pass
    finally:
        for h in handles:
            h.remove()
    if any(out._version != v for out, v in versions):
        log.warning("%s: an output of %s was modified in place during the pass; "
                    "rerunning it with copies", model_id, ", ".join(sorted(keep)))
        buffers.clear()
        return _run_group(module, mods, group, shapes, images, batch_size, dev,
                          copy | keep, progress, model_id)
    return buffers


def extract_summaries(
    loaded,
    stimuli: StimulusSet,
    layers: list[str] | None = None,
    cache_dir: str | os.PathLike | None = None,
    batch_size: int = 32,
    device: str | None = None,
    memory_budget: float = 2 * 2**30,
    progress: bool = True,
    layout: str = "auto",
) -> dict[str, LayerSummary]:
    """Per-layer summaries of ``loaded`` on ``stimuli``, cached on disk.

    Parameters
    ----------
    loaded : neurozoo.models.LoadedModel
    stimuli : StimulusSet
    layers : list of str, optional
        Module names; default: :func:`default_layers`.
    cache_dir : path, optional
        Where summaries are cached (one ``.npz`` per layer, named by
        :func:`summary_key`). Valid entries are reused; others recomputed.
    batch_size : int
    device : str, optional
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; default: GPU if available.
    memory_budget : float
        Bytes of layer activations held at once (see the module docstring).
    progress : bool
        Show a progress bar.
    layout : str
        Memory layout of the forward passes: ``"auto"``, ``"channels_last"``
        or ``"contiguous"`` (:func:`choose_layout`). The network is given back
        in its own layout.

    Returns
    -------
    dict of layer name -> LayerSummary, in execution order
    """
    dev, module, images, default_names, chosen, modified, used, formats = _start(
        loaded, stimuli, device, layers, layout)
    try:
        return _summarise(loaded, stimuli, cache_dir, batch_size, memory_budget, progress,
                          dev, module, images, default_names, chosen, modified, used)
    finally:
        _finish(module, formats)


def _summarise(loaded, stimuli, cache_dir, batch_size, memory_budget, progress, dev,
               module, images, default_names, chosen, modified, layout
               ) -> dict[str, LayerSummary]:
    """The body of :func:`extract_summaries`, after :func:`_start`."""
    n = images.shape[0]
    n_default = max(len(default_names) - 1, 1)
    stim_id = stimuli.identity()
    prep = loaded.preprocessing.to_dict()
    arch = architecture_tag(loaded)
    cache = Path(cache_dir) if cache_dir is not None else None

    results: dict[str, LayerSummary] = {}
    todo: list[tuple[str, tuple]] = []
    for name, shape in chosen:
        if cache is not None:
            path = cache / f"{summary_key(loaded.weights_sha256, prep, stim_id, name, arch)}.npz"
            if path.is_file():
                try:
                    results[name] = LayerSummary.load(path)
                    continue
                except NeurozooError as exc:  # corrupt entry: recompute it
                    log.warning("%s; recomputing it", exc)
        todo.append((name, shape))
    if todo:
        log.info("%s: extracting %d of %d layers on %s", loaded.spec.model_id,
                 len(todo), len(chosen), dev)
    mods = dict(module.named_modules())
    shapes = dict(todo)
    partial: dict[str, list] = {}
    # Outputs that nothing modifies later are kept as they are, batch by
    # batch (no copy); the others are copied into a buffer as the hook runs.
    copy = modified & set(shapes)
    made = _made_with(dev, batch_size, layout)  # one record for every layer of this call
    for group in _groups(todo, n, int(memory_budget)):
        buffers = _run_group(module, mods, group, shapes, images, batch_size, dev, copy,
                             progress, loaded.spec.model_id)
        if dev.type == "cpu":  # every layer of the pass at once (threads share them)
            sums = gram_rowsum_many([buffers[(nm, a)] for nm, a, _ in group])
            buffers.clear()
        else:  # one layer at a time: its n x n result leaves the GPU before the next
            sums = (gram_rowsum_many([buffers.pop((nm, a))])[0] for nm, a, _ in group)
        for (nm, _, b), (gram_t, rowsum_t) in zip(group, sums):
            acc = partial.setdefault(nm, [0.0, 0.0])
            acc[0] = acc[0] + gram_t.cpu().numpy()
            acc[1] = acc[1] + rowsum_t.cpu().numpy()
            shape = shapes[nm]
            if b < int(np.prod(shape)):
                continue  # more feature blocks of this layer to come
            gram, rowsum = partial.pop(nm)
            idx = default_names.index(nm) if nm in default_names else -1
            summary = LayerSummary(
                layer=nm, gram=gram, rowsum=rowsum, n_features=int(np.prod(shape)),
                shape=tuple(shape), index=idx,
                relative_depth=idx / n_default if idx >= 0 else float("nan"),
            )
            results[nm] = summary
            summary.meta = _as_json({
                "model_id": loaded.spec.model_id, "layer": nm,
                "weights_sha256": loaded.weights_sha256, "stimuli": stim_id,
                "preprocessing": prep, **made, "memory_budget": float(memory_budget),
            })
            if cache is not None:
                key = summary_key(loaded.weights_sha256, prep, stim_id, nm, arch)
                summary.save(cache / f"{key}.npz", summary.meta)
    return {name: results[name] for name, _ in chosen}


# ------------------------------------------------------------------ primal path
@dataclass
class LayerProjection:
    """A layer's output, randomly projected while the network runs.

    Attributes
    ----------
    layer : str
    z : ndarray, shape (n_stimuli, k), float64
        ``X R`` for the sparse random matrix ``R`` of
        :class:`neurozoo.mapping.primal.SparseProjector` (or ``X`` itself when
        the layer has no more than ``k`` features).
    n_features : int
        ``p`` of the unprojected layer.
    shape : tuple of int
    index : int
    relative_depth : float
    seed : int
        Seed of ``R``; -1 when the layer was not projected.
    meta : dict
        How it was made, as for :class:`LayerSummary`.
    """

    layer: str
    z: np.ndarray
    n_features: int
    shape: tuple
    index: int
    relative_depth: float
    seed: int
    meta: dict = field(default_factory=dict, compare=False, repr=False)

    def save(self, path: str | os.PathLike, meta: dict) -> None:
        """Write to ``.npz`` atomically, with ``meta`` (JSON text) beside."""
        self.meta = _as_json(meta)
        _write_npz(path, meta, z=self.z, n_features=self.n_features,
                   shape=np.asarray(self.shape), index=self.index,
                   relative_depth=self.relative_depth, seed=self.seed,
                   layer=self.layer, kind="projection")

    @classmethod
    def load(cls, path: str | os.PathLike) -> LayerProjection:
        """Read a projection written by :meth:`save`.

        Raises :class:`NeurozooError` naming the file when it is corrupt.
        """
        def build(z):
            out = cls(
                layer=str(z["layer"]), z=z["z"], n_features=int(z["n_features"]),
                shape=tuple(int(x) for x in z["shape"]), index=int(z["index"]),
                relative_depth=float(z["relative_depth"]), seed=int(z["seed"]),
                meta=_meta(z),
            )
            if out.z.ndim != 2 or not np.isfinite(out.z).all():
                raise NeurozooError(f"cache entry {path} is corrupt: projected features "
                                    "are not a finite 2-d array")
            return out

        return _read_npz(path, build)


def projection_key(weights_sha256: str, preprocessing: dict, stimuli_id: str,
                   layer: str, architecture: str, k: int, seed: int) -> str:
    """Cache key of one layer's projection: :func:`summary_key`'s inputs plus
    the projection's dimension ``k`` and seed."""
    return stable_hash({
        "weights": weights_sha256, "preprocessing": preprocessing,
        "stimuli": stimuli_id, "layer": layer, "version": EXTRACTION_VERSION,
        "architecture": architecture, "kind": "projection", "k": int(k),
        "seed": int(seed),
    }, length=24)


def extract_projections(
    loaded,
    stimuli: StimulusSet,
    layers: list[str] | None = None,
    n_components: int | None = None,
    eps: float = 0.1,
    seed: int = 0,
    batch_size: int = 32,
    device: str | None = None,
    progress: bool = True,
    cache_dir: str | os.PathLike | None = None,
    layout: str = "auto",
) -> dict[str, LayerProjection]:
    """Sparse random projections of layers, streamed in one forward pass.

    Memory per layer is ``n x k`` (plus the sparse ``R``), whatever ``p``.
    With ``cache_dir``, each layer's projection is cached as one ``.npz``
    named by :func:`projection_key`; valid entries are reused and the forward
    pass covers the other layers only.

    Parameters
    ----------
    loaded : neurozoo.models.LoadedModel
    stimuli : StimulusSet
    layers : list of str, optional
        Default: :func:`default_layers`.
    n_components : int, optional
        ``k``; default: the Johnson-Lindenstrauss dimension for ``eps``.
    eps : float
    seed : int
        Seed of the projection matrices (the same ``R`` for a given ``p``).
    batch_size : int
    device : str, optional
    progress : bool
    cache_dir : path, optional
    layout : str
        Memory layout of the forward pass (:func:`choose_layout`); the
        projection sees the features in their usual (channel, height, width)
        order whatever the layout.

    Returns
    -------
    dict of layer name -> LayerProjection, in execution order
    """
    dev, module, images, default_names, chosen, _, used, formats = _start(
        loaded, stimuli, device, layers, layout)
    try:
        return _project(loaded, stimuli, n_components, eps, seed, batch_size, progress,
                        cache_dir, dev, module, images, default_names, chosen, used)
    finally:
        _finish(module, formats)


def _project(loaded, stimuli, n_components, eps, seed, batch_size, progress, cache_dir,
             dev, module, images, default_names, chosen, layout
             ) -> dict[str, LayerProjection]:
    """The body of :func:`extract_projections`, after :func:`_start`."""
    from neurozoo.mapping.primal import SparseProjector, jl_dimension

    n = images.shape[0]
    k = int(n_components) if n_components is not None else jl_dimension(n, eps)
    n_default = max(len(default_names) - 1, 1)
    cache = Path(cache_dir) if cache_dir is not None else None
    prep = loaded.preprocessing.to_dict()
    stim_id = stimuli.identity()
    arch = architecture_tag(loaded) if cache is not None else ""

    def cache_file(name: str) -> Path:
        key = projection_key(loaded.weights_sha256, prep, stim_id, name, arch, k, seed)
        return cache / f"{key}.npz"

    result: dict[str, LayerProjection] = {}
    if cache is not None:
        for nm, _ in chosen:
            if cache_file(nm).is_file():
                try:
                    result[nm] = LayerProjection.load(cache_file(nm))
                except NeurozooError as exc:  # corrupt entry: recompute it
                    log.warning("%s; recomputing it", exc)
    todo = [(nm, shape) for nm, shape in chosen if nm not in result]
    if not todo:
        return {nm: result[nm] for nm, _ in chosen}
    sizes = {nm: int(np.prod(shape)) for nm, shape in todo}
    projectors = {nm: SparseProjector(p, k, seed, dev) for nm, p in sizes.items()
                  if p > k}
    log.info("%s: streamed random projection of %d layers to k=%d (%d layers with "
             "p <= k kept as they are; %d reused from the cache)", loaded.spec.model_id,
             len(projectors), k, len(todo) - len(projectors), len(chosen) - len(todo))
    out = {nm: torch.empty((n, k if nm in projectors else sizes[nm]),
                           dtype=torch.float64, device=dev) for nm, _ in todo}
    state = {"lo": 0, "hi": 0}
    mods = dict(module.named_modules())

    def hook(name):
        def fn(_m, _inp, o):
            flat = o.reshape(o.shape[0], -1)
            proj = projectors[name](flat) if name in projectors else flat
            out[name][state["lo"]: state["hi"]] = proj
        return fn

    handles = [mods[nm].register_forward_hook(hook(nm)) for nm, _ in todo]
    try:
        with torch.inference_mode(), exact_float32(dev):
            for lo in tqdm(range(0, n, batch_size), disable=not progress, leave=False,
                           desc=f"{loaded.spec.model_id} [projection]"):
                hi = min(lo + batch_size, n)
                state.update(lo=lo, hi=hi)
                module(images[lo:hi].to(dev))
    finally:
        for h in handles:
            h.remove()
    made = _made_with(dev, batch_size, layout)
    for nm, shape in todo:
        idx = default_names.index(nm) if nm in default_names else -1
        result[nm] = LayerProjection(
            layer=nm, z=out.pop(nm).cpu().numpy(), n_features=sizes[nm],
            shape=tuple(shape), index=idx,
            relative_depth=idx / n_default if idx >= 0 else float("nan"),
            seed=seed if nm in projectors else -1)
        result[nm].meta = _as_json({
            "model_id": loaded.spec.model_id, "layer": nm, "kind": "projection",
            "weights_sha256": loaded.weights_sha256, "stimuli": stim_id,
            "preprocessing": prep, **made, "k": k, "seed": seed,
        })
        if cache is not None:
            result[nm].save(cache_file(nm), result[nm].meta)
    return {nm: result[nm] for nm, _ in chosen}


#: Largest stimulus count for which :func:`extract_auto` keeps n x n Gram
#: matrices (20,000 stimuli: 3.2 GB per layer in float64).
MAX_GRAM_STIMULI = 20_000


def extract_auto(loaded, stimuli: StimulusSet, layers: list[str] | None = None,
                 cache_dir: str | os.PathLike | None = None, batch_size: int = 32,
                 device: str | None = None, memory_budget: float = 2 * 2**30,
                 progress: bool = True, max_gram_stimuli: int = MAX_GRAM_STIMULI,
                 n_components: int | None = None, eps: float = 0.1, seed: int = 0,
                 layout: str = "auto",
                 ) -> dict[str, LayerSummary] | dict[str, LayerProjection]:
    """Gram summaries when ``n <= max_gram_stimuli``, else streamed projections.

    The choice is logged at INFO level. ``memory_budget`` applies to the Gram
    path (:func:`extract_summaries`), ``n_components``, ``eps`` and ``seed``
    to the primal path (:func:`extract_projections`), and ``cache_dir`` and
    ``layout`` to both (their cache keys differ).

    Returns
    -------
    dict of layer name -> LayerSummary or LayerProjection
    """
    n = len(stimuli)
    if n <= max_gram_stimuli:
        log.info("%d stimuli <= %d: Gram path (exact n x n summaries)", n,
                 max_gram_stimuli)
        return extract_summaries(loaded, stimuli, layers=layers, cache_dir=cache_dir,
                                 batch_size=batch_size, device=device,
                                 memory_budget=memory_budget, progress=progress,
                                 layout=layout)
    log.info("%d stimuli > %d: primal path (streamed sparse random projection)", n,
             max_gram_stimuli)
    return extract_projections(loaded, stimuli, layers=layers,
                               n_components=n_components, eps=eps, seed=seed,
                               batch_size=batch_size, device=device, progress=progress,
                               cache_dir=cache_dir, layout=layout)
