"""Tests of the head-direction module (neurozoo.headdir)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import neurozoo
from neurozoo.errors import NeurozooError
from neurozoo.headdir import analysis as an
from neurozoo.headdir.config import (
    AnalysisConfig,
    HeadDirConfig,
    ModelConfig,
    TaskConfig,
    config_from_dict,
    load_config,
    preset,
)
from neurozoo.headdir.model import HeadDirRNN, random_mask
from neurozoo.headdir.pipeline import analyze_model, samples
from neurozoo.headdir.ring import build_ring_network, heading_driven_trials
from neurozoo.headdir.task import generate_trials, trials_from_velocity, wrap_angle
from neurozoo.headdir.train import (
    heading_error_deg,
    heldout_trials,
    load_trained,
    run_trials,
    train,
)

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]


def tiny_config(**overrides) -> HeadDirConfig:
    """A configuration small enough to train in seconds."""
    base = {
        "task": {"n_steps": 40, "cue_steps": 3},
        "model": {"n_units": 24},
        "train": {
            "n_updates": 60,
            "batch_size": 16,
            "checkpoint_every": 20,
            "log_every": 5,
            "lr": 1e-2,
        },
        "analysis": {"n_trials": 40, "long_factor": 2},
        "seed": 3,
    }
    for key, value in overrides.items():
        section, _, field = key.partition(".")
        base[section][field] = value
    return config_from_dict(base)


# --------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    "section, values, field",
    [
        ("model", {"tau": -1.0}, "model.tau"),
        ("model", {"n_units": 0}, "model.n_units"),
        ("task", {"n_steps": 50, "cue_steps": 80}, "task.cue_steps"),
        ("task", {"n_steps": 50, "cue_steps": 50}, "task.cue_steps"),
        ("task", {"ar_coef": 1.0}, "task.ar_coef"),
        ("task", {"zero_fraction": 1.5}, "task.zero_fraction"),
        ("model", {"nonlinearity": "sigmoid"}, "model.nonlinearity"),
        ("model", {"sparsity": 1.0}, "model.sparsity"),
        ("model", {"n_units": 10.5}, "model.n_units"),
        ("train", {"lr": 0.0}, "train.lr"),
        ("train", {"batch_size": 0}, "train.batch_size"),
        ("model", {"n_unit": 5}, "model.n_unit"),
    ],
)
def test_bad_config_names_field(section, values, field):
    with pytest.raises(NeurozooError, match=rf"^{field}\b"):
        config_from_dict({section: values})


def test_bad_config_fails_in_cli_before_training(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("model:\n  tau: -1\n")
    out = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "neurozoo.headdir.cli",
            "train",
            "--config",
            str(cfg),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PATH": ""},
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "model.tau" in lines[0]
    assert "Traceback" not in proc.stderr
    assert not out.exists()


def test_config_roundtrip_hash_and_overrides(tmp_path):
    cfg = preset("quick")
    again = config_from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and again.hash() == cfg.hash()
    assert cfg.replace({"name": "other"}).hash() == cfg.hash()
    changed = cfg.replace({"model.n_units": 50})
    assert changed.model.n_units == 50 and changed.hash() != cfg.hash()
    with pytest.raises(NeurozooError, match="model.units"):
        cfg.replace({"model.units": 3})
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"preset": "quick", "seed": 7}))
    assert load_config(path) == cfg.replace({"seed": 7})


@pytest.mark.parametrize("name", ["quick", "paper"])
def test_config_files_match_presets(name):
    path = REPO / "neurozoo" / "headdir" / "configs" / f"{name}.yaml"
    assert load_config(path) == preset(name)


def test_paper_preset_scale():
    p = preset("paper")
    assert p.model.n_units == 100 and p.task.n_steps == 500
    assert p.train.batch_size == 100 and p.train.n_updates >= 2000


# ------------------------------------------------------------------------ task


def test_generator_matches_configured_statistics():
    cfg = TaskConfig(
        n_steps=305,
        cue_steps=5,
        ar_coef=0.7,
        noise_std=0.04,
        zero_fraction=0.3,
        zero_stretch=0.2,
    )
    tr = generate_trials(cfg, 3000, rng=11)
    assert tr.inputs.shape == (3000, 305, 3) and tr.targets.shape == (3000, 305, 2)
    v = tr.velocity[:, cfg.cue_steps :]
    has_zero = tr.zero_mask.any(axis=1)
    # share of trials with a zero stretch: binomial, 3000 trials, sd ~ 0.008
    assert abs(has_zero.mean() - 0.3) < 0.03
    # the stretch has the configured length and zero velocity
    assert np.all(tr.zero_mask[has_zero].sum(axis=1) == cfg.zero_steps)
    assert np.all(tr.velocity[tr.zero_mask] == 0)
    assert np.all(tr.velocity[:, : cfg.cue_steps] == 0)
    # AR(1) statistics on trials without a stretch
    free = v[~has_zero]
    x0, x1 = free[:, :-1].ravel(), free[:, 1:].ravel()
    lag1 = np.corrcoef(x0, x1)[0, 1]
    assert abs(lag1 - 0.7) < 0.01
    innovations = x1 - 0.7 * x0
    assert abs(innovations.std() - 0.04) < 0.001
    assert abs(free.std() - cfg.velocity_std) < 0.002
    # heading integrates velocity; cue shows the initial heading
    h0 = np.arctan2(tr.inputs[:, 0, 1], tr.inputs[:, 0, 2])
    expect = wrap_angle(h0[:, None] + np.cumsum(tr.velocity, axis=1))
    assert np.allclose(np.cos(expect - tr.heading), 1, atol=1e-5)
    assert np.all(tr.inputs[:, cfg.cue_steps :, 1:] == 0)
    assert np.allclose(tr.targets[..., 0], np.sin(tr.heading), atol=1e-6)
    assert np.allclose(tr.targets[..., 1], np.cos(tr.heading), atol=1e-6)


def test_generator_seeding_and_longer_trials():
    cfg = TaskConfig()
    a = generate_trials(cfg, 5, rng=1)
    b = generate_trials(cfg, 5, rng=1)
    c = generate_trials(cfg, 5, rng=2)
    assert np.array_equal(a.inputs, b.inputs) and not np.array_equal(a.inputs, c.inputs)
    long = generate_trials(cfg, 5, rng=1, n_steps=400)
    assert long.n_steps == 400
    with pytest.raises(NeurozooError, match="n_steps"):
        generate_trials(cfg, 5, rng=1, n_steps=cfg.cue_steps)


def test_trials_from_recorded_velocity():
    deg_per_s = np.array([[90.0] * 10 + [-45.0] * 10])
    tr = trials_from_velocity(
        deg_per_s, initial_heading=0.5, cue_steps=4, scale=np.deg2rad(1) * 0.1
    )
    assert tr.n_steps == 24 and tr.cue_steps == 4
    step = np.deg2rad(np.r_[[0.0] * 4, [9.0] * 10, [-4.5] * 10])
    assert np.allclose(tr.heading[0], wrap_angle(0.5 + np.cumsum(step)))
    assert np.allclose(tr.inputs[0, :4, 1], np.sin(0.5))
    with pytest.raises(NeurozooError, match="velocity"):
        trials_from_velocity(np.zeros((2, 3, 4)))


# ----------------------------------------------------------------------- model


def reference_ctrnn(model: HeadDirRNN, inputs: np.ndarray) -> np.ndarray:
    """The CTRNN equations step by step, unit by unit, in float64."""
    w = model.effective_weights().detach().double().numpy()
    w_in = model.w_in.detach().double().numpy()
    b = model.bias.detach().double().numpy()
    x0 = model.x0.detach().double().numpy()
    a = model.alpha
    n_trials, n_steps, _ = inputs.shape
    n = w.shape[0]
    rates = np.zeros((n_trials, n_steps, n))
    for k in range(n_trials):
        x = x0.copy()
        r = np.maximum(0, np.tanh(x))
        for t in range(n_steps):
            new = np.empty(n)
            for i in range(n):
                total = b[i] + sum(w[i, j] * r[j] for j in range(n))
                total += sum(w_in[i, m] * inputs[k, t, m] for m in range(3))
                new[i] = (1 - a) * x[i] + a * total
            x = new
            r = np.maximum(0, np.tanh(x))
            rates[k, t] = r
    return rates


def test_model_matches_reference_and_mask_is_applied():
    cfg = ModelConfig(n_units=7, dt=20.0, tau=60.0, sparsity=0.4)
    model = HeadDirRNN(cfg, seed=2)
    with torch.no_grad():
        model.x0.normal_(0, 0.5, generator=torch.Generator().manual_seed(0))
        model.bias.normal_(0, 0.3, generator=torch.Generator().manual_seed(1))
    inputs = generate_trials(TaskConfig(n_steps=12, cue_steps=2), 3, rng=0).inputs
    _, rates = model(torch.as_tensor(inputs), noise=False)
    ref = reference_ctrnn(model, inputs.astype(np.float64))
    assert np.allclose(rates.detach().numpy(), ref, atol=1e-5)
    assert int((model.mask == 0).sum()) == round(0.4 * 49)
    # masked weights have no effect and receive no gradient
    off = model.mask == 0
    with torch.no_grad():
        model.w_rec[off] += 5.0
    _, rates2 = model(torch.as_tensor(inputs), noise=False)
    assert torch.allclose(rates, rates2)
    rates2.sum().backward()
    assert torch.all(model.w_rec.grad[off] == 0)
    assert torch.any(model.w_rec.grad[~off] != 0)


def test_mask_sources(tmp_path):
    m = random_mask(10, 0.5, seed=4)
    assert torch.equal(m, random_mask(10, 0.5, seed=4)) and int(m.sum()) == 50
    np.save(tmp_path / "mask.npy", np.eye(10, dtype=bool))
    model = HeadDirRNN(ModelConfig(n_units=10, mask_path=str(tmp_path / "mask.npy")))
    assert torch.equal(model.mask, torch.eye(10))
    given = HeadDirRNN(ModelConfig(n_units=10, sparsity=0.5), mask=torch.ones(10, 10))
    assert int(given.mask.sum()) == 100
    with pytest.raises(NeurozooError, match="mask"):
        HeadDirRNN(ModelConfig(n_units=10), mask=np.ones((10, 9)))
    with pytest.raises(NeurozooError, match="model.mask_path"):
        HeadDirRNN(ModelConfig(n_units=10, mask_path=str(tmp_path / "none.npy")))


# -------------------------------------------------------------------- analysis


@pytest.fixture(scope="module")
def random_samples():
    rng = np.random.default_rng(0)
    n = 4000
    heading = rng.uniform(-np.pi, np.pi, n)
    velocity = rng.normal(0, 0.05, n)
    rates = np.abs(rng.normal(0, 1, (n, 5))) * (1 + np.cos(heading))[:, None]
    rates[:, 3] += 3 * np.clip(velocity, 0, None)
    return rates, heading, velocity


def test_heading_and_velocity_tuning_match_loops(random_samples):
    rates, heading, velocity = random_samples
    curves, centers, counts = an.tuning_heading(rates, heading, 12)
    edges = np.linspace(-np.pi, np.pi, 13)
    for b in range(12):
        inside = [
            k for k in range(len(heading)) if edges[b] <= heading[k] < edges[b + 1]
        ]
        assert counts[b] == len(inside)
        for u in range(5):
            assert np.isclose(curves[u, b], np.mean([rates[k, u] for k in inside]))
    vedges = np.linspace(-0.1, 0.1, 7)
    vcurves, _, vcounts = an.tuning_velocity(rates, velocity, vedges)
    jmaps, jcounts = an.joint_tuning(rates, heading, velocity, 12, vedges)
    for c in range(6):
        inside = [
            k for k in range(len(velocity)) if vedges[c] <= velocity[k] < vedges[c + 1]
        ]
        assert vcounts[c] == len(inside)
        assert np.isclose(vcurves[2, c], np.mean([rates[k, 2] for k in inside]))
        for b in (0, 5):
            cell = [k for k in inside if edges[b] <= heading[k] < edges[b + 1]]
            assert jcounts[b, c] == len(cell)
            if cell:
                assert np.isclose(jmaps[4, b, c], np.mean([rates[k, 4] for k in cell]))
            else:
                assert np.isnan(jmaps[4, b, c])


def test_preferred_heading_and_turn_index_match_loops(random_samples):
    rates, heading, velocity = random_samples
    curves, centers, _ = an.tuning_heading(rates, heading, 18)
    pref, sel = an.preferred_heading(curves, centers)
    for u in range(5):
        sx = sum(max(curves[u, b], 0) * np.cos(centers[b]) for b in range(18))
        sy = sum(max(curves[u, b], 0) * np.sin(centers[b]) for b in range(18))
        tot = sum(max(curves[u, b], 0) for b in range(18))
        assert np.isclose(pref[u], np.arctan2(sy, sx))
        assert np.isclose(sel[u], np.hypot(sx, sy) / tot)
    assert np.all(np.abs(pref) < 0.3)  # planted around heading 0
    thr = 0.03
    ti = an.turn_index(rates, heading, velocity, thr, n_heading_bins=6)
    edges = np.linspace(-np.pi, np.pi, 7)
    for u in range(5):
        lefts, rights = [], []
        for b in range(6):
            in_bin = [
                k for k in range(len(heading)) if edges[b] <= heading[k] < edges[b + 1]
            ]
            lk = [rates[k, u] for k in in_bin if velocity[k] > thr]
            rk = [rates[k, u] for k in in_bin if velocity[k] < -thr]
            if lk and rk:
                lefts.append(np.mean(lk))
                rights.append(np.mean(rk))
        lm, rm = np.mean(lefts), np.mean(rights)
        assert np.isclose(ti[u], (lm - rm) / (lm + rm))
    assert ti[3] > 0.1 and abs(ti[0]) < 0.1


def test_offset_profiles_and_sorting_match_loops():
    rng = np.random.default_rng(5)
    n = 14
    w = rng.normal(size=(n, n))
    pref = rng.uniform(-np.pi, np.pi, n)
    labels = np.array(["compass"] * 6 + ["left_shifter"] * 4 + ["other"] * 4)
    profiles, centers = an.offset_profiles(w, pref, labels, n_bins=8)
    edges = np.linspace(-np.pi, np.pi, 9)
    assert "right_shifter->compass" not in profiles
    assert "compass->right_shifter" not in profiles
    for key, post_set in [
        ("left_shifter->compass", ["compass"]),
        ("compass->tuned", ["compass", "left_shifter"]),
    ]:
        pre_class = key.split("->")[0]
        for b in range(8):
            vals = []
            for i in range(n):
                for j in range(n):
                    if i == j or labels[j] != pre_class or labels[i] not in post_set:
                        continue
                    d = wrap_angle(pref[i] - pref[j])
                    if edges[b] <= d < edges[b + 1]:
                        vals.append(w[i, j])
            if vals:
                assert np.isclose(profiles[key][b], np.mean(vals))
            else:
                assert np.isnan(profiles[key][b])
    order, ws = an.sort_by_preferred(w, pref, labels)
    assert list(labels[order]) == ["compass"] * 6 + ["left_shifter"] * 4
    assert np.all(np.diff(pref[order[:6]]) >= 0)
    assert ws[2, 3] == w[order[2], order[3]]
    shifted = 0.3 + np.cos(centers - 0.8)
    assert np.isclose(an.profile_phase(shifted, centers), 0.8, atol=1e-6)


def test_error_in_degrees():
    heading = np.array([[0.0, 3.1, -3.1]])
    out = np.stack(
        [np.sin(heading + np.deg2rad(10)), np.cos(heading + np.deg2rad(10))], axis=-1
    )
    assert np.allclose(heading_error_deg(out, heading), 10)


def test_classifier_recovers_planted_ring_populations():
    task = TaskConfig(n_steps=200, cue_steps=5, zero_fraction=0.2)
    net = build_ring_network(velocity_std=task.velocity_std, shift_deg=45.0, seed=1)
    trials = heading_driven_trials(task, 80, seed=2)
    _, rates = run_trials(net.model, trials)
    r, h, v = samples(trials, rates)
    uc = an.classify_units(r, h, v, AnalysisConfig(), task.velocity_std)
    assert list(uc.labels) == list(net.labels)
    assert uc.counts() == {
        "compass": 32,
        "left_shifter": 16,
        "right_shifter": 16,
        "other": 6,
        "silent": 6,
    }
    tuned = np.isfinite(net.preferred)
    err = np.degrees(np.abs(wrap_angle(uc.preferred[tuned] - net.preferred[tuned])))
    assert err.max() < 10
    w = net.model.effective_weights().detach().numpy()
    profiles, centers = an.offset_profiles(w, uc.preferred, uc.labels)

    def phase(key):
        return np.degrees(an.profile_phase(profiles[key], centers))

    assert abs(phase("compass->compass")) < 5
    assert abs(phase("left_shifter->compass") - 45) < 10
    assert abs(phase("right_shifter->compass") + 45) < 10
    # local excitation, broad inhibition on the compass ring
    cc = profiles["compass->compass"]
    assert cc[np.argmin(np.abs(centers))] > 0 and np.nanmin(cc) < 0


# -------------------------------------------------------------------- training


def test_training_lowers_loss_and_resumes_exactly(tmp_path):
    cfg = tiny_config()
    full = train(cfg, tmp_path / "full", progress=False)
    losses = [row["loss"] for row in full.log]
    assert len(losses) == 12
    assert np.mean(losses[-2:]) < 0.6 * np.mean(losses[:2])
    assert full.log[-1]["error_deg"] < full.log[0]["error_deg"]
    # an interrupted run resumes from its checkpoint without redoing updates
    part = train(cfg, tmp_path / "part", progress=False, stop_after=30)
    assert part.log[-1]["step"] == 30
    resumed = train(cfg, tmp_path / "part", progress=False)
    assert resumed.resumed_from == 30  # checkpoint at 30 (stop), not 20
    for (k, a), b in zip(
        full.model.state_dict().items(), resumed.model.state_dict().values()
    ):
        assert torch.allclose(a, b, atol=1e-6), k
    assert [r["step"] for r in resumed.log] == [r["step"] for r in full.log]
    again = train(cfg, tmp_path / "part", progress=False)
    assert again.resumed_from == 60
    with pytest.raises(NeurozooError, match="different configuration"):
        train(tiny_config(**{"model.n_units": 20}), tmp_path / "part", progress=False)
    model, loaded_cfg, state = load_trained(tmp_path / "part")
    assert loaded_cfg == cfg and state["done"] and state["step"] == 60
    assert state["neurozoo_version"] == neurozoo.__version__
    assert state["torch_version"] == torch.__version__ and state["seed"] == 3


def test_cli_train_analyze_figures(tmp_path):
    cfg = tiny_config(**{"train.n_updates": 20, "train.checkpoint_every": 10})
    path = tmp_path / "tiny.yaml"
    import yaml

    path.write_text(yaml.safe_dump(cfg.to_dict()))
    out = tmp_path / "run"
    env = {
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": "1",
        "PATH": "",
        "MPLBACKEND": "Agg",
    }
    for args in (
        [
            "train",
            "--config",
            str(path),
            "--out",
            str(out),
            "--no-progress",
            "--device",
            "cpu",
            "--set",
            "seed=3",
        ],
        ["analyze", "--out", str(out)],
        ["figures", "--out", str(out)],
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "neurozoo.headdir.cli", *args],
            capture_output=True,
            text=True,
            cwd=REPO,
            env=env,
        )
        assert proc.returncode == 0, proc.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["neurozoo_version"] == neurozoo.__version__
    assert metrics["torch_version"] == torch.__version__
    assert metrics["seed"] == 3 and metrics["config"] == cfg.to_dict()
    assert set(metrics["unit_counts"]) == set(an.CLASSES)
    assert sum(metrics["unit_counts"].values()) == 24
    assert metrics["training"]["updates_done"] == 20
    assert metrics["long_trials"]["n_steps"] == 80
    for name in (
        "tuning_curves",
        "velocity_tuning",
        "joint_maps",
        "connectivity_sorted",
        "offset_profiles",
        "heading_error",
        "loss",
    ):
        assert (out / f"{name}.png").stat().st_size > 1000
    for f in ("checkpoint.pt", "loss.csv", "config.json", "analysis.npz"):
        assert (out / f).is_file()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "neurozoo.headdir.cli",
            "figures",
            "--out",
            str(tmp_path / "nothing"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
    )
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1


def test_trained_network_has_compass_and_shifter_units(tmp_path):
    """A shortened quick run already shows the compass/shifter structure."""
    cfg = preset("quick").replace({"train.n_updates": 500, "analysis.n_trials": 100})
    result = train(cfg, tmp_path / "q", progress=False)
    _, metrics = analyze_model(result.model, cfg)
    counts = metrics["unit_counts"]
    assert counts["compass"] >= 5
    assert counts["left_shifter"] >= 3 and counts["right_shifter"] >= 3
    assert metrics["heading_error_deg"]["heldout_mean_noiseless"] < 15
    phases = metrics["profile_phase_deg"]
    assert phases["left_shifter->compass"] > 10
    assert phases["right_shifter->compass"] < -10


def test_heldout_trials_differ_from_training_trials():
    cfg = tiny_config()
    from neurozoo.headdir.train import training_batch

    held = heldout_trials(cfg, n_trials=16)
    for step in range(5):
        assert not np.allclose(training_batch(cfg, step).inputs, held.inputs)


def test_masked_run_reloads_without_its_mask_file(tmp_path):
    mask = np.ones((24, 24), dtype=bool)
    mask[:, :12] = False
    np.save(tmp_path / "m.npy", mask)
    cfg = tiny_config(
        **{
            "model.mask_path": str(tmp_path / "m.npy"),
            "train.n_updates": 5,
            "train.checkpoint_every": 5,
        }
    )
    result = train(cfg, tmp_path / "run", progress=False)
    assert torch.equal(result.model.mask, torch.as_tensor(mask, dtype=torch.float32))
    (tmp_path / "m.npy").unlink()
    model, _, _ = load_trained(tmp_path / "run")
    assert torch.equal(model.mask, torch.as_tensor(mask, dtype=torch.float32))
    trials = heldout_trials(cfg, n_trials=4)
    a, _ = run_trials(model, trials)
    b, _ = run_trials(result.model, trials)
    assert np.allclose(a, b)
