"""neurozoo: how well do deep networks explain mouse visual cortex, layer by layer.

The package is organised by pipeline stage:

- :mod:`neurozoo.data`: neural responses (xarray) and stimulus sets;
- :mod:`neurozoo.models`: the model zoo, addressed by string ids;
- :mod:`neurozoo.features`: streamed per-layer summaries (Gram matrices);
- :mod:`neurozoo.mapping`: ridge regression, RSA and their scores;
- :mod:`neurozoo.scoring`: per-neuroid and per-area scores, best-layer selection;
- :mod:`neurozoo.pipeline`: the stages as Python entrypoints, and ``run``.
"""

__version__ = "0.1.0"

from neurozoo.errors import NeurozooError  # noqa: E402

__all__ = ["NeurozooError", "__version__"]
