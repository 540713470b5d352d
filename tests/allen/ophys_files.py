"""Write a small Brain Observatory 2-photon cache in the layout allensdk reads.

The cache folder holds the two metadata tables (``experiment_containers.json``,
``ophys_experiments.json``, in the warehouse's record format), one NWB 1 file
per natural-scenes session (``ophys_experiment_data/{id}.nwb``, written with
h5py at the paths ``BrainObservatoryNwbDataSet`` reads) and the L0 event files
(``ophys_experiment_events/{id}_events.npz``). Everything random is drawn from
a seeded generator and returned, so tests can recompute responses by brute force.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

N_IMAGES = 4
N_REPEATS = 5
FRAMES_PER_IMAGE = 7  # 0.25 s at ~30 Hz, as in the Brain Observatory
PIPE = "processing/brain_observatory_pipeline"

# (container id, area, depth, cre, reporter, failed, donor)
CONTAINERS = [
    (511500001, "VISp", 175, "Cux2-CreERT2", "Ai93(TITL-GCaMP6f)", False, 1001),
    (511500002, "VISl", 375, "Rbp4-Cre_KL100", "Ai93(TITL-GCaMP6f)", False, 1002),
    (511500003, "VISp", 175, "Cux2-CreERT2", "Ai93(TITL-GCaMP6f)", True, 1003),
    (511500004, "VISal", 275, "Rorb-IRES2-Cre", "Ai93(TITL-GCaMP6f)", False, 1004),
]


@dataclass
class Session:
    """What one written natural-scenes session contains."""

    experiment_id: int
    container_id: int
    cell_ids: np.ndarray          # (n_cells,)
    timestamps: np.ndarray        # (n_frames,)
    dff: np.ndarray               # (n_cells, n_frames)
    events: np.ndarray            # (n_cells, n_frames)
    frames: np.ndarray            # (n_presentations,) image index, -1 blank
    start: np.ndarray             # (n_presentations,) first frame
    end: np.ndarray               # (n_presentations,)


@dataclass
class OphysCache:
    root: Path
    templates: np.ndarray          # (N_IMAGES, h, w) uint8
    sessions: dict[int, Session] = field(default_factory=dict)


def _specimen(donor: int, cre: str, reporter: str) -> dict:
    return {
        "id": donor * 10,
        "name": f"{cre.split('-')[0]};{reporter.split('(')[0]}-{donor}",
        "donor": {
            "external_donor_name": str(donor),
            "date_of_birth": "2016-01-01T00:00:00Z",
            "conditions": [],
            "transgenic_lines": [
                {"name": cre, "transgenic_line_type_name": "driver"},
                {"name": "Camk2a-tTA", "transgenic_line_type_name": "driver"},
                {"name": reporter, "transgenic_line_type_name": "reporter"},
            ],
        },
    }


def _fixed(text: str) -> np.ndarray:
    """A fixed-length byte string, the way the Allen NWB 1 files store text."""
    return np.array(text.encode(), dtype=f"S{max(len(text), 1)}")


def _write_nwb(path: Path, s: Session, templates, depth: int, area: str,
               cre: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f["session_start_time"] = _fixed("2016-05-01 10:00:00")
        f["general/devices/2-photon microscope"] = _fixed(
            "Fixture scope. Fixture scope model Please see the documentation")
        f["general/generated_by"] = np.array([b"pipeline", b"2.0"], dtype="S8")
        f["general/session_type"] = _fixed("three_session_B")
        f["general/session_id"] = _fixed(str(s.experiment_id))
        f["general/experiment_container_id"] = _fixed(str(s.container_id))
        f["general/subject/genotype"] = _fixed(f"{cre}/wt;Camk2a-tTA/wt")
        f["general/subject/age"] = _fixed("100 days")
        f["general/subject/sex"] = _fixed("male")
        f["general/specimen_name"] = _fixed("fixture")
        plane = "general/optophysiology/imaging_plane_1"
        f[f"{plane}/imaging depth"] = _fixed(f"{depth} microns")
        f[f"{plane}/location"] = _fixed(f"area: {area}")
        f[f"{plane}/indicator"] = _fixed("GCaMP6f")
        f[f"{plane}/excitation_lambda"] = _fixed("910 nanometers")
        f["general/fov"] = _fixed("400x400 microns (512 x 512 pixels)")
        dff = f.create_group(f"{PIPE}/DfOverF/imaging_plane_1")
        dff["data"] = s.dff
        dff["timestamps"] = s.timestamps
        seg = f.create_group(f"{PIPE}/ImageSegmentation")
        seg["cell_specimen_ids"] = s.cell_ids
        seg["roi_ids"] = np.array([str(i).encode() for i in range(len(s.cell_ids))])
        pres = f.create_group("stimulus/presentation/natural_scenes_stimulus")
        pres["data"] = s.frames.astype(np.float32)
        pres["frame_duration"] = np.stack([s.start, s.end], axis=1).astype(np.float64)
        pres["timestamps"] = s.timestamps[s.start]
        f["stimulus/templates/natural_scenes_image_stack/data"] = templates


def _session(rng, exp_id: int, container_id: int, n_cells: int,
             first_cell: int) -> Session:
    # Presentation order: N_REPEATS blocks, each a shuffle of the images and
    # one blank; back to back, 7 frames each, after 40 frames of grey.
    order = np.concatenate([rng.permutation(np.arange(-1, N_IMAGES))
                            for _ in range(N_REPEATS)])
    start = 40 + FRAMES_PER_IMAGE * np.arange(order.size)
    end = start + FRAMES_PER_IMAGE
    n_frames = int(end[-1]) + 45
    # ~30 Hz frames with jitter, so window edges fall between frames.
    timestamps = 12.0 + np.cumsum(rng.uniform(0.031, 0.036, n_frames))
    tuning = rng.gamma(2.0, 0.2, size=(n_cells, N_IMAGES + 1))
    tuning[:, 0] = 0.0  # blank (index -1 + 1)
    kernel = np.exp(-np.arange(20) / 6.0)
    dff = np.zeros((n_cells, n_frames))
    for img, s0 in zip(order, start):
        seg = slice(s0, min(s0 + kernel.size, n_frames))
        dff[:, seg] += tuning[:, img + 1, None] * kernel[None, : seg.stop - s0]
    dff += 0.05 * rng.normal(size=dff.shape)
    events = np.where(rng.random(dff.shape) < 0.1, rng.gamma(1.0, 0.5, dff.shape),
                      0.0)
    cell_ids = np.arange(first_cell, first_cell + n_cells, dtype=np.int64)
    return Session(exp_id, container_id, cell_ids, timestamps,
                   dff.astype(np.float32), events.astype(np.float32),
                   order.astype(np.int64), start.astype(np.int64),
                   end.astype(np.int64))


def write_ophys_cache(root: Path, seed: int = 0) -> OphysCache:
    """Write the cache; return what it contains."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    templates = rng.integers(0, 256, size=(N_IMAGES, 6, 8), dtype=np.uint8)
    cache = OphysCache(root, templates)
    containers, experiments = [], []
    for k, (cid, area, depth, cre, reporter, failed, donor) in enumerate(CONTAINERS):
        specimen = _specimen(donor, cre, reporter)
        containers.append({
            "id": cid, "imaging_depth": depth, "failed": failed,
            "targeted_structure": {"acronym": area}, "specimen": specimen,
        })
        for j, session_type in enumerate(
                ["three_session_A", "three_session_B", "three_session_C2"]):
            exp_id = 600000000 + 10 * k + j
            experiments.append({
                "id": exp_id, "imaging_depth": depth, "stimulus_name": session_type,
                "targeted_structure": {"acronym": area}, "specimen": specimen,
                "specimen_id": specimen["id"], "experiment_container_id": cid,
                "experiment_container": {"failed": failed},
                "date_of_acquisition": "2016-05-01T10:00:00Z",
            })
            if session_type != "three_session_B":
                continue
            s = _session(rng, exp_id, cid, n_cells=3 + k, first_cell=500000 + 100 * k)
            cache.sessions[exp_id] = s
            _write_nwb(root / "ophys_experiment_data" / f"{exp_id}.nwb", s,
                       templates, depth, area, cre)
            ev = root / "ophys_experiment_events" / f"{exp_id}_events.npz"
            ev.parent.mkdir(exist_ok=True)
            np.savez(ev, ev=s.events)
    (root / "experiment_containers.json").write_text(json.dumps(containers))
    (root / "ophys_experiments.json").write_text(json.dumps(experiments))
    return cache


def brute_force(s: Session, signal: np.ndarray, window, baseline=None):
    """Trial responses by explicit loops: (n_trials, N_IMAGES, n_cells)."""
    period = np.median(np.diff(s.timestamps))
    out = np.full((N_REPEATS, N_IMAGES, len(s.cell_ids)), np.nan)
    seen = [0] * N_IMAGES

    def mean_in(t_on, win, cell):
        if t_on + win[0] < s.timestamps[0] or t_on + win[1] > s.timestamps[-1] + period:
            return np.nan
        vals = [signal[cell, k] for k in range(len(s.timestamps))
                if t_on + win[0] <= s.timestamps[k] < t_on + win[1]]
        return np.mean(vals) if vals else np.nan

    for p in np.argsort(s.start, kind="stable"):
        img = s.frames[p]
        if img < 0:
            continue
        t_on = s.timestamps[s.start[p]]
        for cell in range(len(s.cell_ids)):
            v = mean_in(t_on, window, cell)
            if baseline is not None:
                v -= mean_in(t_on, baseline, cell)
            out[seen[img], img, cell] = v
        seen[img] += 1
    return out
