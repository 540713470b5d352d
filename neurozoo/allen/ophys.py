"""Allen Brain Observatory Visual Coding 2-photon: natural scenes responses.

Selection
    Experiment containers (one field of view imaged over three sessions) are
    selected through ``allensdk``'s ``BrainObservatoryCache`` by targeted area,
    imaging depth, Cre line and reporter line (failed containers are left out
    unless asked for). Of each container, the session that shows natural scenes
    (``three_session_B``) is loaded.

Response of a cell to one presentation
    The mean of its dF/F trace (the pipeline's ``DfOverF``; or, with
    ``signal="events"``, its detected L0 event magnitudes) over the imaging
    frames with ``t_on + w0 <= t < t_on + w1`` after the presentation's onset
    ``t_on``; default window ``(0.0, 0.5)`` s, which covers the 0.25 s image
    and the slow calcium response that follows, as in the Brain Observatory's
    own natural-scenes analysis (mean over twice the image duration from
    onset). Optionally minus the mean over a baseline window, e.g.
    ``(-1.0, 0.0)`` s. Blank-screen presentations (image ``-1``) are dropped.
    Each image is shown 50 times; the ``k``-th showing is trial ``k``.

Neuroid metadata
    ``neuroid_id`` = ``cell_specimen_id`` (str), ``area``, ``specimen_id``,
    ``cell_specimen_id``, ``depth`` (um), ``layer`` (from depth),
    ``cre_line``, ``reporter_line``, ``experiment_container_id``,
    ``ophys_experiment_id``, ``reliability`` (split-half, Spearman-Brown).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from neurozoo.allen.cache import manifest_path, require_files
from neurozoo.allen.common import (
    assemble_trials,
    depth_to_layer,
    provenance_base,
    stack_sessions,
    window_means,
)
from neurozoo.errors import NeurozooError

__all__ = ["OphysConfig", "select_experiments", "experiment_responses",
           "fetch_ophys"]

log = logging.getLogger(__name__)

STIMULUS = "natural_scenes"
HOW_TO_GET = (
    "Run this once with network access to download them into the cache "
    "folder, or point --cache-dir at an existing Brain Observatory manifest.json "
    "(or a folder holding one) whose files are already on disk"
)


@dataclass
class OphysConfig:
    """What to load from the 2-photon data set, and how to compute responses.

    Attributes
    ----------
    areas : list of str, optional
        Targeted areas (Allen codes, e.g. ``["VISp", "VISl"]``); None = all.
    depths : list of int, optional
        Imaging depths in um as listed by Allen (e.g. ``[175, 275]``).
    cre_lines, reporter_lines : list of str, optional
        E.g. ``["Cux2-CreERT2"]``, ``["Ai93(TITL-GCaMP6f)"]``.
    container_ids : list of int, optional
        Only these experiment containers.
    include_failed : bool
        Keep containers that Allen's QC marked as failed.
    max_experiments : int, optional
        Load at most this many sessions (the first by container id).
    signal : {"dff", "events"}
    window_s : (float, float)
        Response window after onset, seconds.
    baseline_s : (float, float), optional
        Baseline window subtracted, seconds (None: no baseline).
    min_reliability : float, optional
        Keep only cells whose split-half reliability is at least this.
    n_splits : int
        Random splits for the reliability.
    """

    areas: list[str] | None = None
    depths: list[int] | None = None
    cre_lines: list[str] | None = None
    reporter_lines: list[str] | None = None
    container_ids: list[int] | None = None
    include_failed: bool = False
    max_experiments: int | None = None
    signal: str = "dff"
    window_s: tuple[float, float] = (0.0, 0.5)
    baseline_s: tuple[float, float] | None = None
    min_reliability: float | None = None
    n_splits: int = 100

    def __post_init__(self):
        if self.signal not in ("dff", "events"):
            raise NeurozooError(
                f"signal '{self.signal}' is not one of ['dff', 'events']")


def _cache(cache_dir):
    """A BrainObservatoryCache on ``cache_dir`` (a folder or a manifest file)."""
    from allensdk.core.brain_observatory_cache import BrainObservatoryCache

    manifest = manifest_path(cache_dir, "manifest.json")
    manifest.parent.mkdir(parents=True, exist_ok=True)
    return BrainObservatoryCache(manifest_file=str(manifest))


def select_experiments(boc, cfg: OphysConfig, offline: bool = False) -> list[dict]:
    """The natural-scenes experiments of the selected containers.

    Parameters
    ----------
    boc : allensdk BrainObservatoryCache
    cfg : OphysConfig
    offline : bool
        Raise at once if the metadata files are not in the cache.

    Returns
    -------
    list of dict
        Allen's experiment records (unsimplified), sorted by container id.
    """
    from allensdk.api.warehouse_cache.cache import Cache

    paths = [boc.get_cache_path(None, boc.EXPERIMENT_CONTAINERS_KEY),
             boc.get_cache_path(None, boc.EXPERIMENTS_KEY)]
    require_files(paths, "Brain Observatory metadata file(s)", HOW_TO_GET, offline)
    containers = boc.get_experiment_containers(
        ids=cfg.container_ids,
        targeted_structures=cfg.areas,
        imaging_depths=cfg.depths,
        cre_lines=cfg.cre_lines,
        reporter_lines=cfg.reporter_lines,
        include_failed=cfg.include_failed,
    )
    container_ids = sorted(c["id"] for c in containers)
    # BrainObservatoryCache.get_ophys_experiments queries the eye-tracking
    # file list online on every call; read and filter the cached table
    # through the API object instead, which only touches the file.
    exps = boc.api.get_ophys_experiments(
        path=paths[1], strategy="lazy", **Cache.cache_json())
    exps = boc.api.filter_ophys_experiments(
        exps,
        experiment_container_ids=container_ids,
        stimuli=[STIMULUS],
        include_failed=cfg.include_failed,
    )
    exps = sorted(exps, key=lambda e: (e["experiment_container_id"], e["id"]))
    if cfg.max_experiments is not None:
        exps = exps[: cfg.max_experiments]
    log.info("%d containers match; %d natural-scenes sessions selected",
             len(container_ids), len(exps))
    return exps


def _specimen_id(exp: dict) -> int:
    if exp.get("specimen_id") is not None:
        return int(exp["specimen_id"])
    return int(exp["specimen"]["id"])


def experiment_responses(data_set, exp: dict, cfg: OphysConfig, n_stimuli: int,
                         events=None):
    """Trial responses of every cell of one natural-scenes session.

    Parameters
    ----------
    data_set : allensdk BrainObservatoryNwbDataSet
    exp : dict
        The experiment's Allen record (for metadata).
    cfg : OphysConfig
    n_stimuli : int
        Number of images (118).
    events : ndarray, shape (n_cells, n_frames), optional
        Event magnitudes (required when ``cfg.signal == "events"``).

    Returns
    -------
    values : ndarray, shape (n_trials, n_stimuli, n_cells), float32
    coords : dict of str -> ndarray, shape (n_cells,)
        Per-cell metadata (see the module docstring).
    """
    from allensdk.api.queries.brain_observatory_api import (
        find_specimen_cre_line,
        find_specimen_reporter_line,
    )

    timestamps, dff = data_set.get_dff_traces()
    cell_ids = np.asarray(data_set.get_cell_specimen_ids()).astype(np.int64)
    if cfg.signal == "events":
        if events is None or np.shape(events) != np.shape(dff):
            raise NeurozooError(
                f"experiment {exp['id']}: events have shape {np.shape(events)}, "
                f"dF/F has {np.shape(dff)}")
        signal = events
    else:
        signal = dff
    table = data_set.get_stimulus_table(STIMULUS).sort_values("start")
    frames = table["frame"].to_numpy().astype(np.int64)
    onsets = np.asarray(timestamps)[table["start"].to_numpy().astype(np.int64)]
    shown = frames >= 0  # -1 marks the blank screen
    resp = window_means(signal, timestamps, onsets[shown], cfg.window_s,
                        cfg.baseline_s)
    values = assemble_trials(frames[shown], resp, n_stimuli)
    n = len(cell_ids)
    depth = float(exp["imaging_depth"])
    coords = {
        "neuroid_id": cell_ids.astype(str),
        "cell_specimen_id": cell_ids,
        "area": np.full(n, exp["targeted_structure"]["acronym"]),
        "specimen_id": np.full(n, _specimen_id(exp), dtype=np.int64),
        "depth": np.full(n, depth),
        "layer": np.repeat(depth_to_layer([depth]), n),
        "cre_line": np.full(n, find_specimen_cre_line(exp["specimen"]) or ""),
        "reporter_line": np.full(
            n, find_specimen_reporter_line(exp["specimen"]) or ""),
        "experiment_container_id": np.full(n, int(exp["experiment_container_id"]),
                                           dtype=np.int64),
        "ophys_experiment_id": np.full(n, int(exp["id"]), dtype=np.int64),
        "n_trials": np.full(n, values.shape[0], dtype=np.int64),
    }
    return values, coords


def fetch_ophys(cache_dir, cfg: OphysConfig, offline: bool = False,
                progress: bool = True):
    """Load the selected 2-photon sessions into NeuralResponses.

    Parameters
    ----------
    cache_dir : path
        The Brain Observatory cache: a folder (its ``manifest.json`` is created
        if absent) or an existing manifest file.
    cfg : OphysConfig
    offline : bool
        Never download: missing files are an error at once.
    progress : bool
        Show a progress bar over sessions.

    Returns
    -------
    responses : NeuralResponses, dims (trial, stimulus, neuroid)
        Without reliability filtering (see :func:`neurozoo.allen.fetch.finish`).
    templates : ndarray, shape (n_stimuli, height, width)
    provenance : dict
    """
    from tqdm import tqdm

    from neurozoo.data.responses import make_responses

    boc = _cache(cache_dir)
    exps = select_experiments(boc, cfg, offline)
    if not exps:
        raise NeurozooError(
            f"no natural-scenes session matches the filters {_filters(cfg)}")
    nwb = [Path(boc.get_cache_path(None, boc.EXPERIMENT_DATA_KEY, e["id"]))
           for e in exps]
    needed = list(nwb)
    if cfg.signal == "events":
        needed += [Path(boc.get_cache_path(None, boc.EVENTS_DATA_KEY, e["id"]))
                   for e in exps]
    require_files(needed, "2-photon session file(s)", HOW_TO_GET, offline)

    blocks, coord_blocks, templates = [], [], None
    for exp in tqdm(exps, desc="2-photon sessions", disable=not progress):
        data_set = boc.get_ophys_experiment_data(exp["id"])
        if templates is None:
            templates = np.asarray(data_set.get_stimulus_template(STIMULUS))
        events = (boc.get_ophys_experiment_events(exp["id"])
                  if cfg.signal == "events" else None)
        values, coords = experiment_responses(data_set, exp, cfg, len(templates),
                                              events)
        blocks.append(values)
        coord_blocks.append(coords)

    values, coords = stack_sessions(blocks, coord_blocks)
    ids, counts = np.unique(coords["neuroid_id"], return_counts=True)
    if (counts > 1).any():
        raise NeurozooError(
            f"cell_specimen_id {ids[counts > 1][:5].tolist()} appear in more than "
            "one natural-scenes session")
    units = "dF/F" if cfg.signal == "dff" else "event magnitude per frame"
    config = {**asdict(cfg), "filters": _filters(cfg)}
    provenance = provenance_base("allen_ophys", config)
    provenance["ophys_experiment_ids"] = [int(e["id"]) for e in exps]
    provenance["experiment_container_ids"] = sorted(
        {int(e["experiment_container_id"]) for e in exps})
    da = make_responses(
        values,
        stimulus_ids=[str(i) for i in range(len(templates))],
        neuroid_ids=coords.pop("neuroid_id"),
        area=coords.pop("area"),
        specimen_id=coords.pop("specimen_id"),
        attrs={
            "source": "Allen Brain Observatory Visual Coding 2-photon, natural scenes",
            "units": units,
            "signal": cfg.signal,
            "window_s": list(cfg.window_s),
            "baseline_s": "none" if cfg.baseline_s is None else list(cfg.baseline_s),
        },
        **coords,
    )
    return da, templates, provenance


def _filters(cfg: OphysConfig) -> dict:
    return {k: v for k, v in (
        ("areas", cfg.areas), ("depths", cfg.depths), ("cre_lines", cfg.cre_lines),
        ("reporter_lines", cfg.reporter_lines),
        ("container_ids", cfg.container_ids),
        ("include_failed", cfg.include_failed)) if v not in (None, False)}
