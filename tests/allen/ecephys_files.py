"""Write a small Visual Coding Neuropixels cache in the layout allensdk reads.

The cache folder holds the project tables (``sessions.csv``, ``probes.csv``,
``channels.csv``, ``units.csv``), one NWB 2 file per session
(``session_{id}/session_{id}.nwb``, written with pynwb and the SDK's
``ndx-aibs-ecephys`` extension types, the layout ``EcephysNwbSessionApi``
reads) and the natural scene templates (``natural_scene_templates/
natural_scene_{i}.tiff``). Spike times and presentation times are random and
returned, so tests can count spikes by brute force.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

N_IMAGES = 3
N_REPEATS = 4
IMAGE_S = 0.25


@dataclass
class Unit:
    id: int
    channel_id: int
    area: str
    quality: str
    amplitude_cutoff: float
    presence_ratio: float
    isi_violations: float
    snr: float
    spike_times: np.ndarray


@dataclass
class Session:
    id: int
    specimen_id: int
    session_type: str
    units: list[Unit]
    frames: np.ndarray      # (n_presentations,) image, -1 blank
    start: np.ndarray       # (n_presentations,) seconds
    stop: np.ndarray


@dataclass
class EcephysCache:
    root: Path
    templates: list[np.ndarray]
    sessions: dict[int, Session] = field(default_factory=dict)


# (session id, specimen id, session type)
SESSIONS = [(715093703, 699733581, "brain_observatory_1.1"),
            (719161530, 703279284, "brain_observatory_1.1"),
            (766640955, 744912849, "functional_connectivity")]
AREAS = ["VISp", "VISl", "CA1", "VISam"]


def _units(rng, session_id, channel_ids, areas, t_end):
    units = []
    # (quality, amplitude_cutoff, presence_ratio, isi_violations, snr)
    kinds = [("good", 0.01, 0.99, 0.1, 3.0),   # passes everything
             ("good", 0.3, 0.99, 0.1, 3.0),    # fails amplitude cutoff
             ("good", 0.01, 0.5, 0.1, 3.0),    # fails presence ratio
             ("good", 0.01, 0.99, 0.9, 3.0),   # fails ISI violations
             ("noise", 0.01, 0.99, 0.1, 3.0),  # fails Allen's quality label
             ("good", 0.05, 0.95, 0.2, 0.8)]   # passes, low SNR
    for c, (ch, area) in enumerate(zip(channel_ids, areas)):
        for k, kind in enumerate(kinds):
            n = int(rng.integers(150, 400))
            spikes = np.sort(rng.uniform(0.0, t_end, n))
            units.append(Unit(session_id * 100 + 10 * c + k, ch, area, kind[0],
                              *kind[1:], spikes))
    return units


def _write_nwb(path: Path, s: Session, probe_id: int, channels: list[tuple]):
    import pynwb
    from allensdk.brain_observatory.ecephys.nwb import (
        EcephysElectrodeGroup,
        EcephysProbe,
        EcephysSpecimen,
    )

    nwb = pynwb.NWBFile(
        session_description="fixture", identifier=str(s.id),
        session_start_time=datetime(2019, 1, 1, tzinfo=UTC),
        stimulus_notes=s.session_type)
    nwb.subject = EcephysSpecimen(
        subject_id=str(s.specimen_id), specimen_name="fixture", age_in_days=100.0,
        strain="C57BL/6J", genotype="wt/wt", sex="M", species="Mus musculus",
        age="P100D")
    device = EcephysProbe(name="probeA", description="Neuropixels 1.0",
                          manufacturer="imec", sampling_rate=30000.0,
                          probe_id=probe_id)
    nwb.add_device(device)
    group = EcephysElectrodeGroup(
        name="probeA", description="probeA", location="See electrode locations",
        device=device, has_lfp_data=False, probe_id=probe_id,
        lfp_sampling_rate=2500.0)
    nwb.add_electrode_group(group)
    for col, desc in [("probe_id", "probe"), ("local_index", "channel number"),
                      ("probe_horizontal_position", "um"),
                      ("probe_vertical_position", "um"), ("valid_data", "valid")]:
        nwb.add_electrode_column(name=col, description=desc)
    for ch_id, local, area in channels:
        nwb.add_electrode(id=ch_id, x=1.0, y=2.0, z=3.0, imp=np.nan,
                          location=area, filtering="none", group=group,
                          probe_id=probe_id, local_index=local,
                          probe_horizontal_position=11,
                          probe_vertical_position=20 * local, valid_data=True)
    for col, desc in [("peak_channel_id", ""), ("local_index", ""),
                      ("cluster_id", ""), ("quality", ""), ("firing_rate", ""),
                      ("isi_violations", ""), ("presence_ratio", ""),
                      ("amplitude_cutoff", ""), ("snr", "")]:
        nwb.add_unit_column(name=col, description=desc or col)
    nwb.add_unit_column(name="spike_amplitudes", description="amplitudes",
                        index=True)
    for k, u in enumerate(s.units):
        nwb.add_unit(id=u.id, spike_times=u.spike_times,
                     spike_amplitudes=np.full(u.spike_times.size, 1e-4),
                     waveform_mean=np.zeros((len(channels), 4)),
                     peak_channel_id=u.channel_id, local_index=k, cluster_id=k,
                     quality=u.quality, firing_rate=u.spike_times.size / 60.0,
                     isi_violations=u.isi_violations,
                     presence_ratio=u.presence_ratio,
                     amplitude_cutoff=u.amplitude_cutoff, snr=u.snr)
    table = pynwb.epoch.TimeIntervals(
        name="natural_scenes_presentations", description="natural scenes")
    for col in ("stimulus_name", "stimulus_block", "frame", "stimulus_index"):
        table.add_column(name=col, description=col)
    for p in range(s.frames.size):
        table.add_interval(start_time=float(s.start[p]), stop_time=float(s.stop[p]),
                           stimulus_name="natural_scenes", stimulus_block=1.0,
                           frame=float(s.frames[p]), stimulus_index=1.0)
    nwb.add_time_intervals(table)
    path.parent.mkdir(parents=True, exist_ok=True)
    with pynwb.NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)


def write_ecephys_cache(root: Path, seed: int = 0) -> EcephysCache:
    """Write the cache; return what it contains."""
    import SimpleITK as sitk

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    templates = [rng.integers(0, 256, size=(5, 7), dtype=np.uint8)
                 for _ in range(N_IMAGES)]
    (root / "natural_scene_templates").mkdir(exist_ok=True)
    scenes = root / "natural_scene_templates"
    for i, t in enumerate(templates):
        image = sitk.GetImageFromArray(t)
        sitk.WriteImage(image, str(scenes / f"natural_scene_{i}.tiff"))
    cache = EcephysCache(root, templates)
    sessions, probes, channels_rows, units_rows = [], [], [], []
    for n, (sid, specimen, stype) in enumerate(SESSIONS):
        probe_id = sid + 1
        channel_ids = [sid + 10 + c for c in range(len(AREAS))]
        order = np.concatenate([rng.permutation(np.arange(-1, N_IMAGES))
                                for _ in range(N_REPEATS)])
        start = 5.0 + IMAGE_S * np.arange(order.size) + rng.uniform(0, 1e-3,
                                                                    order.size)
        stop = start + IMAGE_S
        units = _units(rng, sid, channel_ids, AREAS, float(stop[-1]) + 5.0)
        # spikes exactly on window edges, to pin the inclusive convention
        units[0].spike_times = np.sort(np.concatenate(
            [units[0].spike_times, start[:3], start[3:6] + IMAGE_S]))
        s = Session(sid, specimen, stype, units, order, start, stop)
        cache.sessions[sid] = s
        _write_nwb(root / f"session_{sid}" / f"session_{sid}.nwb", s, probe_id,
                   [(ch, c, AREAS[c]) for c, ch in enumerate(channel_ids)])
        sessions.append({"id": sid, "specimen_id": specimen, "session_type": stype,
                         "genotype": "wt/wt", "age_in_days": 100.0, "sex": "M",
                         "published_at": "2019-10-03", "has_nwb": True,
                         "isi_experiment_id": n, "date_of_acquisition": "2019-01-01"})
        probes.append({"id": probe_id, "ecephys_session_id": sid, "name": "probeA",
                       "sampling_rate": 30000.0, "lfp_sampling_rate": 2500.0,
                       "phase": "3a", "has_lfp_data": False})
        for c, ch in enumerate(channel_ids):
            channels_rows.append({
                "id": ch, "ecephys_probe_id": probe_id, "local_index": c,
                "probe_horizontal_position": 11, "probe_vertical_position": 20 * c,
                "ecephys_structure_id": 385 + c,
                "ecephys_structure_acronym": AREAS[c],
                "anterior_posterior_ccf_coordinate": 8000.0,
                "dorsal_ventral_ccf_coordinate": 1000.0,
                "left_right_ccf_coordinate": 9000.0})
        for u in units:
            units_rows.append({
                "id": u.id, "ecephys_channel_id": u.channel_id,
                "quality": u.quality, "snr": u.snr,
                "amplitude_cutoff": u.amplitude_cutoff,
                "presence_ratio": u.presence_ratio,
                "isi_violations": u.isi_violations,
                "firing_rate": u.spike_times.size / 60.0})
    for name, rows in [("sessions", sessions), ("probes", probes),
                       ("channels", channels_rows), ("units", units_rows)]:
        pd.DataFrame(rows).to_csv(root / f"{name}.csv", index=False)
    return cache


def brute_force_counts(s: Session, unit: Unit, window):
    """Spike counts per (trial, image) by explicit loops, both edges inclusive."""
    out = np.full((N_REPEATS, N_IMAGES), np.nan)
    seen = [0] * N_IMAGES
    for p in np.argsort(s.start, kind="stable"):
        img = int(s.frames[p])
        if img < 0:
            continue
        t = s.start[p]
        out[seen[img], img] = sum(
            1 for x in unit.spike_times if t + window[0] <= x <= t + window[1])
        seen[img] += 1
    return out
