"""Allen Visual Coding Neuropixels: natural scenes responses per unit.

Selection
    Sessions of type ``brain_observatory_1.1`` (the ones that show natural
    scenes) through ``allensdk``'s ``EcephysProjectCache``. Units pass
    ``allensdk``'s quality filters, with the values the Allen documentation
    recommends as defaults: ``amplitude_cutoff <= 0.1``,
    ``presence_ratio >= 0.9``, ``isi_violations <= 0.5`` and Allen's
    ``quality == "good"`` label; optionally ``snr >= snr_min``. Only units whose
    peak channel lies in one of the selected areas (default: the six visual
    cortical areas) are kept.

Response of a unit to one presentation
    The spikes with ``t_on + w0 <= t <= t_on + w1`` (``allensdk``'s
    ``presentationwise_spike_counts`` convention: both edges inclusive), as a
    count or as a rate ``count / (w1 - w0)`` in Hz; default window
    ``(0.0, 0.25)`` s, the image's duration. Blank presentations (image ``-1``)
    are dropped; the ``k``-th showing of an image is trial ``k``.

Neuroid metadata
    ``neuroid_id`` = ``unit_id`` (str), ``area``, ``specimen_id``,
    ``ecephys_session_id``, ``probe``, ``probe_id``,
    ``probe_vertical_position``, ``genotype`` and the quality metrics
    (``firing_rate``, ``snr``, ``isi_violations``, ``amplitude_cutoff``,
    ``presence_ratio``), ``reliability``.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from neurozoo.allen import VISUAL_AREAS
from neurozoo.allen.cache import manifest_path, require_files
from neurozoo.allen.common import assemble_trials, provenance_base, stack_sessions
from neurozoo.errors import NeurozooError

__all__ = ["EcephysConfig", "session_responses", "fetch_ecephys"]

log = logging.getLogger(__name__)

STIMULUS = "natural_scenes"
SESSION_TYPE = "brain_observatory_1.1"
QUALITY_METRICS = ("firing_rate", "snr", "isi_violations", "amplitude_cutoff",
                   "presence_ratio")
HOW_TO_GET = (
    "Run this once with network access to download them into the cache "
    "folder, or point --cache-dir at an existing ecephys manifest.json (or a "
    "folder holding one) whose files are already on disk"
)


@dataclass
class EcephysConfig:
    """What to load from the Neuropixels data set, and how to count spikes.

    Attributes
    ----------
    areas : list of str
        Keep units whose peak channel is in these structures.
    session_ids : list of int, optional
        Only these sessions (default: every ``brain_observatory_1.1`` session).
    max_sessions : int, optional
        Load at most this many sessions (the first by id).
    amplitude_cutoff_max, presence_ratio_min, isi_violations_max : float
        ``allensdk`` unit quality filters.
    snr_min : float, optional
        Further filter on the waveform signal-to-noise ratio.
    window_s : (float, float)
        Counting window after onset, seconds.
    measure : {"rate", "count"}
    min_reliability : float, optional
        Keep only units whose split-half reliability is at least this.
    n_splits : int
        Random splits for the reliability.
    """

    areas: list[str] = tuple(VISUAL_AREAS)
    session_ids: list[int] | None = None
    max_sessions: int | None = None
    amplitude_cutoff_max: float = 0.1
    presence_ratio_min: float = 0.9
    isi_violations_max: float = 0.5
    snr_min: float | None = None
    window_s: tuple[float, float] = (0.0, 0.25)
    measure: str = "rate"
    min_reliability: float | None = None
    n_splits: int = 100

    def __post_init__(self):
        if self.measure not in ("rate", "count"):
            raise NeurozooError(
                f"measure '{self.measure}' is not one of ['rate', 'count']")
        self.areas = list(self.areas)
        if not self.window_s[1] > self.window_s[0]:
            raise NeurozooError(f"window {self.window_s}: end must exceed start")


def _refuse_download(*args, **kwargs):
    raise NeurozooError(f"offline: not downloading {args[0] if args else ''}")


def _cache(cache_dir, offline: bool):
    from allensdk.brain_observatory.ecephys.ecephys_project_api import (
        EcephysProjectFixedApi,
    )
    from allensdk.brain_observatory.ecephys.ecephys_project_cache import (
        EcephysProjectCache,
    )

    manifest = manifest_path(cache_dir, "manifest.json")
    manifest.parent.mkdir(parents=True, exist_ok=True)
    if offline:
        # EcephysProjectCache.fixed() fails in allensdk 2.16.2 (it asks the
        # fixed API for an HTTP engine); build the same cache by hand.
        return EcephysProjectCache(fetch_api=EcephysProjectFixedApi(),
                                   stream_writer=_refuse_download,
                                   manifest=str(manifest))
    return EcephysProjectCache.from_warehouse(manifest=str(manifest))


def session_responses(session, session_row, cfg: EcephysConfig, n_stimuli: int):
    """Trial responses of the selected units of one session.

    Parameters
    ----------
    session : allensdk EcephysSession
        Opened with the quality filters of ``cfg``.
    session_row : pandas.Series
        The session's row of the project's session table.
    cfg : EcephysConfig
    n_stimuli : int

    Returns
    -------
    values : ndarray, shape (n_trials, n_stimuli, n_units), float32
    coords : dict of str -> ndarray, shape (n_units,)
    """
    units = session.units
    units = units[units["ecephys_structure_acronym"].isin(cfg.areas)]
    if cfg.snr_min is not None:
        units = units[units["snr"] >= cfg.snr_min]
    units = units.sort_index()
    table = session.get_stimulus_table([STIMULUS]).sort_values("start_time")
    frames = table["frame"].astype(float).to_numpy().astype(np.int64)
    shown = frames >= 0  # -1 marks the blank screen
    w0, w1 = (float(w) for w in cfg.window_s)
    counts = session.presentationwise_spike_counts(
        bin_edges=np.array([w0, w1]),
        stimulus_presentation_ids=table.index.values[shown],
        unit_ids=units.index.values,
    )
    counts = np.asarray(counts.values)[:, 0, :].astype(np.float64)
    resp = counts / (w1 - w0) if cfg.measure == "rate" else counts
    values = assemble_trials(frames[shown], resp, n_stimuli)
    n = len(units)

    def col(name, dtype=float, fill=np.nan):
        if name in units.columns:
            return units[name].to_numpy().astype(dtype)
        return np.full(n, fill, dtype=dtype)

    coords = {
        "neuroid_id": units.index.values.astype(np.int64).astype(str),
        "unit_id": units.index.values.astype(np.int64),
        "area": units["ecephys_structure_acronym"].to_numpy().astype(str),
        "specimen_id": np.full(n, int(session_row["specimen_id"]), dtype=np.int64),
        "ecephys_session_id": np.full(n, int(session_row.name), dtype=np.int64),
        "probe": col("probe_description", str, ""),
        "probe_id": col("probe_id", np.int64, -1),
        "probe_vertical_position": col("probe_vertical_position"),
        "genotype": np.full(n, str(session_row.get("full_genotype", ""))),
        "n_trials": np.full(n, values.shape[0], dtype=np.int64),
    }
    for name in QUALITY_METRICS:
        coords[name] = col(name)
    return values, coords


def fetch_ecephys(cache_dir, cfg: EcephysConfig, offline: bool = False,
                  progress: bool = True):
    """Load the selected Neuropixels sessions into NeuralResponses.

    Parameters
    ----------
    cache_dir : path
        The ecephys project cache: a folder (its ``manifest.json`` is created if
        absent) or an existing manifest file.
    cfg : EcephysConfig
    offline : bool
        Never download (uses ``EcephysProjectCache.fixed``): missing files are
        an error at once.
    progress : bool

    Returns
    -------
    responses : NeuralResponses, dims (trial, stimulus, neuroid)
    templates : list of ndarray, each shape (height, width)
    provenance : dict
    """
    from tqdm import tqdm

    from neurozoo.data.responses import make_responses

    cache = _cache(cache_dir, offline)
    tables = [cache.get_cache_path(None, key) for key in (
        cache.SESSIONS_KEY, cache.PROBES_KEY, cache.CHANNELS_KEY, cache.UNITS_KEY)]
    require_files(tables, "Neuropixels project table(s)", HOW_TO_GET, offline)
    sessions = cache.get_session_table()
    sessions = sessions[sessions["session_type"] == SESSION_TYPE]
    if cfg.session_ids is not None:
        unknown = sorted(set(cfg.session_ids) - set(sessions.index))
        if unknown:
            raise NeurozooError(
                f"session id(s) {unknown} are not {SESSION_TYPE} sessions in "
                f"{tables[0]}")
        sessions = sessions.loc[list(cfg.session_ids)]
    sessions = sessions.sort_index()
    if cfg.max_sessions is not None:
        sessions = sessions.iloc[: cfg.max_sessions]
    if sessions.empty:
        raise NeurozooError(f"no {SESSION_TYPE} session selected")
    nwb = [Path(cache.get_cache_path(None, cache.SESSION_NWB_KEY, int(s), int(s)))
           for s in sessions.index]
    require_files(nwb, "Neuropixels session NWB file(s)", HOW_TO_GET, offline)

    opened = []
    for sid, row in tqdm(list(sessions.iterrows()), desc="Neuropixels sessions",
                         disable=not progress):
        session = cache.get_session_data(
            int(sid),
            amplitude_cutoff_maximum=cfg.amplitude_cutoff_max,
            presence_ratio_minimum=cfg.presence_ratio_min,
            isi_violations_maximum=cfg.isi_violations_max,
        )
        opened.append((session, row))
    n_stimuli = 1 + max(
        int(s.get_stimulus_table([STIMULUS])["frame"].astype(float).max())
        for s, _ in opened)
    scene_paths = [cache.get_cache_path(None, cache.NATURAL_SCENE_KEY, i)
                   for i in range(n_stimuli)]
    require_files(scene_paths, "natural scene template image(s)", HOW_TO_GET,
                  offline)
    templates = [np.asarray(cache.get_natural_scene_template(i))
                 for i in range(n_stimuli)]

    blocks, coord_blocks = [], []
    for session, row in opened:
        values, coords = session_responses(session, row, cfg, n_stimuli)
        log.info("session %s: %d units", row.name, values.shape[2])
        blocks.append(values)
        coord_blocks.append(coords)
    if sum(b.shape[2] for b in blocks) == 0:
        raise NeurozooError(
            f"no unit in {cfg.areas} passes the quality filters in the selected "
            "sessions")
    values, coords = stack_sessions(blocks, coord_blocks)
    provenance = provenance_base("allen_ecephys", asdict(cfg))
    provenance["ecephys_session_ids"] = [int(s) for s in sessions.index]
    da = make_responses(
        values,
        stimulus_ids=[str(i) for i in range(n_stimuli)],
        neuroid_ids=coords.pop("neuroid_id"),
        area=coords.pop("area"),
        specimen_id=coords.pop("specimen_id"),
        attrs={
            "source": "Allen Visual Coding Neuropixels, natural scenes",
            "units": "Hz" if cfg.measure == "rate" else "spikes",
            "window_s": list(cfg.window_s),
        },
        **coords,
    )
    return da, templates, provenance
