"""Allen Brain Observatory loaders: Visual Coding 2-photon and Neuropixels.

The loaders turn the Allen Brain Observatory natural-scenes recordings into
NeuralResponses (see :mod:`neurozoo.data.responses`) plus a stimulus folder:

- :mod:`neurozoo.allen.ophys`: 2-photon calcium imaging (dF/F or detected
  events), through ``allensdk``'s ``BrainObservatoryCache``;
- :mod:`neurozoo.allen.ecephys`: Neuropixels spike counts or rates, through
  ``allensdk``'s ``EcephysProjectCache``;
- :mod:`neurozoo.allen.common`: window arithmetic, trial assembly, layers,
  reliability tables and the output folder (usable without ``allensdk``);
- :mod:`neurozoo.allen.cli`: the ``neurozoo data fetch|info|validate`` commands.

``allensdk`` pins old numpy, pandas, scipy and xarray, so it lives in its own
virtual environment (``.venv-allen``, ``make allen-env``); only the fetch stage
runs there, and it writes a plain netCDF file that the core reads. Nothing in
this package imports ``allensdk`` at module level.
"""

VISUAL_AREAS = ("VISp", "VISl", "VISal", "VISrl", "VISam", "VISpm")

__all__ = ["VISUAL_AREAS"]
