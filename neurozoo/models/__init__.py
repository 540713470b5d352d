"""The model zoo: ids, weights, preprocessing and variants."""

from neurozoo.models.preprocessing import Preprocessing
from neurozoo.models.spec import ModelSpec, parse_model_id
from neurozoo.models.transforms import TRANSFORMS, register_transform
from neurozoo.models.zoo import (
    ALIASES,
    DEFAULT_ZOO,
    LoadedModel,
    list_models,
    load_model,
    resolve_model_id,
)

__all__ = [
    "ALIASES",
    "DEFAULT_ZOO",
    "LoadedModel",
    "ModelSpec",
    "Preprocessing",
    "TRANSFORMS",
    "list_models",
    "load_model",
    "parse_model_id",
    "register_transform",
    "resolve_model_id",
]
