"""Sparse training: the step-indexed loop, rewinding, RigL, early-bird tickets
and the sparsify stage, on scikit-learn's real digits images."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch
from torch import nn

from neurozoo.cli import main
from neurozoo.errors import NeurozooError
from neurozoo.models import load_model
from neurozoo.sparsity import (
    magnitude_scores,
    masks_from_scores,
    prunable_weights,
    sparsity_report,
)
from neurozoo.sparsity.data import load_labelled_images
from neurozoo.sparsity.earlybird import EarlyBird, channel_masks, mask_distance
from neurozoo.sparsity.pipeline import (
    load_checkpoint,
    load_sparsify_config,
    run_sparsify,
)
from neurozoo.sparsity.rigl import RigL, erk_densities
from neurozoo.sparsity.train import TrainConfig, batch_indices, evaluate, lr_at, train

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


@pytest.fixture(scope="module")
def digits():
    return load_labelled_images("digits", 8, MEAN, STD, 0.2, 0)


def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 64, 64), nn.BatchNorm1d(64),
                         nn.ReLU(), nn.Linear(64, 10))


def test_schedules():
    c = TrainConfig(steps=100, lr=1.0, warmup_steps=10, schedule="cosine")
    assert lr_at(c, 0) == pytest.approx(0.1)
    assert lr_at(c, 9) == pytest.approx(1.0)
    assert lr_at(c, 10) == pytest.approx(1.0)
    assert lr_at(c, 55) == pytest.approx(0.5)
    s = TrainConfig(steps=100, lr=1.0, schedule="step")
    assert [lr_at(s, t) for t in (0, 49, 50, 74, 75, 99)] == pytest.approx(
        [1, 1, 0.1, 0.1, 0.01, 0.01])
    with pytest.raises(NeurozooError, match="train.schedule"):
        TrainConfig(schedule="linear")
    with pytest.raises(NeurozooError, match="train.steps"):
        TrainConfig(steps=0)


def test_batches_are_epoch_permutations_and_a_function_of_the_step():
    n, b = 23, 5
    epoch0 = torch.cat([batch_indices(n, b, 7, s) for s in range(4)])
    assert len(set(epoch0.tolist())) == 20
    assert torch.equal(batch_indices(n, b, 7, 5), batch_indices(n, b, 7, 5))
    assert not torch.equal(batch_indices(n, b, 7, 0), batch_indices(n, b, 7, 4))
    with pytest.raises(NeurozooError, match="exceeds"):
        batch_indices(3, 5, 0, 0)


def test_digits_split_is_stratified(digits):
    assert len(digits.y_train) + len(digits.y_test) == 1797
    counts = np.bincount(digits.y_test.numpy())
    full = np.bincount(np.concatenate([digits.y_train.numpy(), digits.y_test.numpy()]))
    np.testing.assert_array_equal(counts, np.round(0.2 * full).astype(int))
    assert digits.x_train.shape[1:] == (3, 8, 8)


def test_training_learns_real_digits(digits):
    net = _mlp()
    before = evaluate(net, digits.x_test, digits.y_test)["accuracy"]
    train(net, digits.x_train, digits.y_train, TrainConfig(steps=150, lr=0.1))
    after = evaluate(net, digits.x_test, digits.y_test)["accuracy"]
    assert before < 0.3 and after > 0.9


def test_training_resumes_at_any_step(digits):
    cfg = TrainConfig(steps=40, lr=0.1, momentum=0.0, weight_decay=1e-3)
    a, b = _mlp(), _mlp()
    train(a, digits.x_train, digits.y_train, cfg, seed=3)
    train(b, digits.x_train, digits.y_train, cfg, seed=3, end=17)
    train(b, digits.x_train, digits.y_train, cfg, seed=3, start=17)
    for (n, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), n


def test_masks_stay_zero_under_momentum_and_decay(digits):
    net = _mlp()
    masks = masks_from_scores({n: w.abs() for n, w in prunable_weights(net).items()},
                              0.3)
    train(net, digits.x_train, digits.y_train,
          TrainConfig(steps=30, lr=0.1, momentum=0.9, weight_decay=1e-2), masks=masks)
    for n, w in prunable_weights(net).items():
        assert torch.all(w[~masks[n]] == 0)
        assert torch.count_nonzero(w[masks[n]]) == masks[n].sum()


def test_erk_densities_against_the_definition():
    shapes = {"c1": (16, 3, 3, 3), "c2": (32, 16, 3, 3), "fc": (10, 512)}
    d = erk_densities(shapes, 0.6)
    sizes = {n: math.prod(s) for n, s in shapes.items()}
    kept = sum(d[n] * sizes[n] for n in shapes)
    assert kept == pytest.approx(0.6 * sum(sizes.values()))
    sparse = [n for n in shapes if d[n] < 1]
    ratios = [d[n] / (sum(shapes[n]) / sizes[n]) for n in sparse]
    assert max(ratios) == pytest.approx(min(ratios))
    # (sum / prod) is largest for fc: at 0.6 it would exceed 1, so it is dense
    assert d["fc"] == 1.0 and len(sparse) == 2
    assert all(0 < v <= 1 for v in d.values())


def test_rigl_update_against_brute_force():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    rigl = RigL(net, 0.5, end_step=100, delta=10, alpha=0.4, distribution="uniform",
                seed=1)
    x, y = torch.randn(16, 6), torch.randint(0, 3, (16,))
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    nn.functional.cross_entropy(net(x), y).backward()
    opt.step()  # momentum buffers, non-zero everywhere
    opt.zero_grad()
    with torch.no_grad():  # give the surviving weights distinct values
        for w in prunable_weights(net).values():
            w.add_(0.01 * torch.randn_like(w))
        for n, w in prunable_weights(net).items():
            w.mul_(rigl.masks[n])
    before = {n: m.clone() for n, m in rigl.masks.items()}
    weights = {n: w.detach().clone() for n, w in prunable_weights(net).items()}
    nn.functional.cross_entropy(net(x), y).backward()
    grads = {n: w.grad.clone() for n, w in prunable_weights(net).items()}
    assert not rigl.due(0) and not rigl.due(5) and rigl.due(10) and not rigl.due(100)
    assert rigl.update(5, opt) is False
    assert rigl.update(10, opt) is True
    f = 0.2 * (1 + math.cos(math.pi * 0.1))
    assert rigl.fraction(10) == pytest.approx(f)
    for n, w in prunable_weights(net).items():
        old, new = before[n].flatten(), rigl.masks[n].flatten()
        assert int(new.sum()) == int(old.sum())
        k = int(f * int(old.sum()))
        active = [i for i in range(old.numel()) if old[i]]
        drop = sorted(active, key=lambda i: abs(float(weights[n].flatten()[i])))[:k]
        after_drop = [i for i in active if i not in drop]
        inactive = [i for i in range(old.numel()) if i not in after_drop]
        grow = sorted(inactive, key=lambda i: -abs(float(grads[n].flatten()[i])))[:k]
        assert sorted(np.flatnonzero(new.numpy()).tolist()) == sorted(after_drop + grow)
        grown = [i for i in grow if not old[i]]
        assert grown and all(float(w.detach().flatten()[i]) == 0 for i in grown)
        buf = opt.state[w]["momentum_buffer"].flatten()
        dropped = [i for i in drop if not new[i]]
        assert all(float(buf[i]) == 0 for i in grown + dropped)
        kept = [i for i in after_drop]
        assert all(float(buf[i]) != 0 for i in kept)
    assert rigl.updates == 1


def test_early_bird_masks_distance_and_emergence():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.Conv2d(4, 6, 1),
                        nn.BatchNorm2d(6))
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor([0.5, -0.1, 0.3, 0.05]))
        net[3].weight.copy_(torch.tensor([0.2, 0.01, -0.6, 0.4, 0.02, 0.7]))
    m = channel_masks(net, 0.4)  # 4 of 10 channels: |g| 0.01, 0.02, 0.05, 0.1
    assert m["1.weight"].tolist() == [True, False, True, False]
    assert m["3.weight"].tolist() == [True, False, True, True, False, True]
    assert torch.equal(m["1.bias"], m["1.weight"])
    other = {k: v.clone() for k, v in m.items()}
    other["3.weight"][0] = False
    assert mask_distance(m, other) == pytest.approx(0.1)
    eb = EarlyBird(0.4, window=3, epsilon=0.05)
    assert [eb.update(net) for _ in range(3)] == [False, False, True]
    assert eb.distances[-1] == 0.0
    # the largest distance in the window decides: 0.2 to the oldest mask,
    # 0 to the newer one
    eb = EarlyBird(0.2, window=3, epsilon=0.1)
    gammas = [[0.5, 0.4, 0.3, 0.2], [0.1, 0.01, 0.6, 0.7, 0.8, 0.9]]
    eb.update(net)
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor(gammas[0]))
        net[3].weight.copy_(torch.tensor(gammas[1]))
    assert eb.update(net) is False and eb.update(net) is False
    assert eb.distances[-1] == pytest.approx(mask_distance(eb.history[0],
                                                           eb.history[-1]))
    assert eb.distances[-1] > 0.1
    with pytest.raises(NeurozooError, match="batch norm"):
        channel_masks(nn.Linear(2, 2), 0.5)


# ---------------------------------------------------------------- the stage

BASE = {"model": "torchvision:resnet18@random:0", "image_size": 16,
        "train.steps": 12, "train.batch_size": 32, "train.lr": 0.05,
        "rewind_step": 4, "rounds": 2, "density": 0.25}


def _state(path):
    return load_checkpoint(path)["state_dict"]


@pytest.mark.parametrize("rewind", ["weight", "lr", "init", "reinit"])
def test_imp_rounds_rewind_as_defined(tmp_path, rewind):
    cfg = load_sparsify_config(None, {**BASE, "rewind": rewind})
    out = tmp_path / rewind
    ids = run_sparsify(cfg, out)
    assert [i.rsplit("/", 2)[-2] for i in ids] == ["round_0", "round_1", "round_2"]
    cks = [load_checkpoint(out / f"round_{r}" / "model.pt") for r in range(3)]
    dens = [ck["neurozoo"]["mask_density"] for ck in cks]
    assert dens == pytest.approx([1.0, 0.5, 0.25], abs=1e-6)
    for prev, ck, density in zip(cks, cks[1:], (0.5, 0.25)):
        # each round's mask: the largest trained weights of the round before,
        # among those it kept
        trained = load_model(cfg.model).module
        trained.load_state_dict(prev["state_dict"])
        expected = masks_from_scores(magnitude_scores(trained), density,
                                     current=prev["masks"])
        assert all(torch.equal(ck["masks"][n], expected[n]) for n in expected)
    # Round 2 again, by hand: masks of round 2 on the rewound weights, then
    # the steps the rewinding rule says.
    data = load_labelled_images("digits", 16, (0.485, 0.456, 0.406),
                                (0.229, 0.224, 0.225), 0.2, 0)
    net = load_model(cfg.model).module
    for p in net.parameters():
        p.requires_grad_(True)
    if rewind == "weight":
        net.load_state_dict(torch.load(out / "rewind.pt", weights_only=True)["state"])
    elif rewind == "lr":
        net.load_state_dict(cks[1]["state_dict"])
    elif rewind == "reinit":
        net = load_model("torchvision:resnet18@random:2").module
        for p in net.parameters():
            p.requires_grad_(True)
    start = 0 if rewind in ("init", "reinit") else 4
    train(net, data.x_train, data.y_train, cfg.train, start=start,
          masks=cks[2]["masks"], seed=0)
    for n, v in net.state_dict().items():
        torch.testing.assert_close(v, cks[2]["state_dict"][n], rtol=1e-5, atol=1e-6)
    if rewind == "weight":  # the rewind point is step 4 of the dense run
        ref = load_model(cfg.model).module
        for p in ref.parameters():
            p.requires_grad_(True)
        train(ref, data.x_train, data.y_train, cfg.train, end=4, seed=0)
        saved = torch.load(out / "rewind.pt", weights_only=True)["state"]
        for n, v in ref.state_dict().items():
            torch.testing.assert_close(v, saved[n], rtol=1e-6, atol=1e-7)


def test_stage_resumes_refuses_other_configs_and_feeds_the_zoo(
        tmp_path, small_dataset, cache_env, capsys):
    out = tmp_path / "imp"
    cfg = load_sparsify_config(None, BASE)
    ids = run_sparsify(cfg, out)
    last = out / "round_2" / "model.pt"
    first = (out / "round_0" / "model.pt").stat().st_mtime_ns
    before = _state(last)
    last.unlink()
    assert run_sparsify(cfg, out) == ids
    assert (out / "round_0" / "model.pt").stat().st_mtime_ns == first
    for n, v in _state(last).items():
        assert torch.equal(v, before[n]), n
    # a lost rewind point is remade, a gap in the rounds is retrained
    (out / "rewind.pt").unlink()
    shutil.rmtree(out / "round_1")
    assert run_sparsify(cfg, out) == ids
    assert (out / "round_0" / "model.pt").stat().st_mtime_ns == first
    for n, v in _state(last).items():
        assert torch.equal(v, before[n]), n
    with pytest.raises(NeurozooError, match="another configuration"):
        run_sparsify(load_sparsify_config(None, {**BASE, "density": 0.5}), out)
    metrics = json.loads((out / "round_2" / "metrics.json").read_text())
    for key in ("neurozoo_version", "config", "data_sha256", "seed", "weights_sha256",
                "test_accuracy", "layers"):
        assert key in metrics
    # the zoo loads the checkpoint as it was saved, and the run scores it
    loaded = load_model(ids[-1])
    assert loaded.weights_sha256 == metrics["weights_sha256"]
    info = loaded.provenance()["sparsify"]
    assert info["method"] == "imp" and info["round"] == 2
    assert info["weight_density"] == metrics["weight_density"]
    rows = sparsity_report(loaded.module)
    n = sum(r["n"] for r in rows)
    assert sum(r["nonzero"] for r in rows) <= round(0.25 * n)
    res = tmp_path / "res"
    run_cfg = tmp_path / "run.json"
    run_cfg.write_text(json.dumps({
        "data": str(small_dataset / "responses.nc"), "models": [ids[-1]],
        "layers": {ids[-1]: ["layer4.1", "avgpool"]}, "reliability_splits": 5,
        "scoring": {"n_bootstrap": 20, "n_folds": 3}}))
    code = main(["-q", "run", "--config", str(run_cfg), "--out", str(res)])
    assert code == 0
    import pandas as pd

    table = pd.read_csv(res / "scores.csv")
    assert set(table.model_id) == {ids[-1]}
    best = table[(table.selection == "best_heldout") & (table.metric == "ridge_r")]
    assert len(best) == 2 and best.value.notna().all()
    prov = json.loads((res / "provenance.json").read_text())["models"][ids[-1]]
    assert prov["sparsify"]["config_hash"] == cfg.hash()
    capsys.readouterr()


def test_resume_is_exact_with_dropout_and_data_changes_retrain(tmp_path, bundled):
    # MobileNetV3 has dropout before its classifier: a resumed round must draw
    # the same dropout masks
    _, stimuli = bundled
    images = tmp_path / "images"
    for c in range(2):
        (images / f"c{c}").mkdir(parents=True)
        for i in range(12):
            stimuli.load_image(12 * c + i).save(images / f"c{c}" / f"{i}.png")
    cfg = load_sparsify_config(None, {
        "model": "torchvision:mobilenet_v3_small@random:0", "data": str(images),
        "image_size": 32, "rounds": 2, "density": 0.5, "rewind_step": 2,
        "train.steps": 6, "train.batch_size": 8})
    out = tmp_path / "run"
    run_sparsify(cfg, out, progress=False)
    before = _state(out / "round_2" / "model.pt")
    (out / "round_2" / "model.pt").unlink()
    run_sparsify(cfg, out, progress=False)
    for n, v in _state(out / "round_2" / "model.pt").items():
        assert torch.equal(v, before[n]), n
    # one training image changes: every checkpoint is made again
    old = load_checkpoint(out / "round_0" / "model.pt")["neurozoo"]["data_sha256"]
    stimuli.load_image(40).save(images / "c0" / "0.png")
    run_sparsify(cfg, out, progress=False)
    for r in range(3):
        info = load_checkpoint(out / f"round_{r}" / "model.pt")["neurozoo"]
        assert info["data_sha256"] != old


def test_oneshot_rigl_and_earlybird_stages(tmp_path, capsys):
    for overrides, names in [
        ({"method": "oneshot", "criterion": "snip"}, ["pruned", "trained"]),
        ({"method": "oneshot", "criterion": "grasp"}, ["pruned", "trained"]),
        ({"method": "rigl", "rigl_delta": 3}, ["trained"]),
        ({"method": "earlybird", "eb_window": 2, "eb_epsilon": 0.5,
          "channel_ratio": 0.3, "train.steps": 30, "train.batch_size": 256},
         ["ticket", "trained"]),
    ]:
        out = tmp_path / "-".join(str(v) for v in overrides.values())
        assert main(["-q", "sparsify", "--out", str(out)]
                    + [f"--set={k}={v}" for k, v in {**BASE, **overrides}.items()]) == 0
        printed = capsys.readouterr().out.split()
        assert [p.rsplit("/", 2)[-2] for p in printed] == names
        assert printed == (out / "models.txt").read_text().split()
        last = load_checkpoint(out / names[-1] / "model.pt")["neurozoo"]
        if overrides["method"] == "earlybird":
            assert last["mask_density"] == pytest.approx(0.7, abs=0.01)
            ticket = load_checkpoint(out / "ticket" / "model.pt")["neurozoo"]
            assert ticket["emerged_epoch"] is not None
        else:
            assert last["weight_density"] <= 0.25 + 1e-9
        if overrides["method"] == "rigl":
            assert last["rigl_updates"] == 2  # steps 3 and 6, before 0.75 * 12


def test_stage_errors(tmp_path, capsys):
    def fails(*sets, needle, out="a"):
        args = ["sparsify", "--out", str(tmp_path / out)]
        for item in sets:
            args += ["--set", item]
        assert main(args) == 2
        err = capsys.readouterr().err
        assert needle in err and "Traceback" not in err, err
        assert len(err.strip().splitlines()) == 1, err

    fails("density=2", needle="density")
    fails("model=torchvision:resnet18@random:0+magprune:0.5", needle="magprune")
    fails("model=5", needle="model: must be a non-empty string")
    fails("data=5", needle="data: must be a non-empty string")
    fails("seed=100000000000000", needle="seed")
    fails(f"data={tmp_path / 'missing'}", needle="missing")
    fails("model=torchvision:alexnet@random:0", "image_size=8", needle="image_size")
    fails("method=earlybird", "model=torchvision:alexnet@random:0",
          needle="no affine batch norm")
    fails("train.batch_size=5000", needle="train.batch_size")
    fails("method=earlybird", "train.steps=40", needle="eb_window")
    fails("trian.steps=3", needle="train.steps")
    fails("train.lr=fast", needle="train.lr")
    # nothing was claimed by the failed runs: the folder takes a fixed config
    assert not (tmp_path / "a" / "config.json").exists()
    bad = tmp_path / "bad.yaml"
    bad.write_text("rounds: [1\n")
    assert main(["sparsify", "--config", str(bad), "--out", str(tmp_path / "d")]) == 2
    assert "bad.yaml" in capsys.readouterr().err


def test_config_numbers_and_unused_settings():
    a = load_sparsify_config(None, {"density": 1, "train.lr": "1e-3", "eb_bn_l1": "1e-4"})
    b = load_sparsify_config(None, {"density": 1.0, "train.lr": 0.001, "eb_bn_l1": 1e-4})
    assert a == b and a.hash() == b.hash()
    # rewind_step only matters to IMP with weight or learning-rate rewinding
    load_sparsify_config(None, {"method": "rigl", "train.steps": 10, "rigl_delta": 2})
    with pytest.raises(NeurozooError, match="no RigL update"):
        load_sparsify_config(None, {"method": "rigl", "train.steps": 40})
    load_sparsify_config(None, {"rewind": "init", "train.steps": 10})
    with pytest.raises(NeurozooError, match="rewind_step"):
        load_sparsify_config(None, {"rewind": "lr", "train.steps": 10})


def test_weight_rewinding_to_step_zero_and_replace(tmp_path):
    out = tmp_path / "w0"
    cfg = load_sparsify_config(None, {**BASE, "rewind": "weight", "rewind_step": 0,
                                      "rounds": 1})
    run_sparsify(cfg, out, progress=False)
    weight0 = _state(out / "round_1" / "model.pt")
    init = load_sparsify_config(None, {**BASE, "rewind": "init", "rounds": 1})
    with pytest.raises(NeurozooError, match="--replace"):
        run_sparsify(init, out, progress=False)
    run_sparsify(init, out, progress=False, replace=True)
    info = load_checkpoint(out / "round_1" / "model.pt")["neurozoo"]
    assert info["config_hash"] == init.hash()
    for n, v in _state(out / "round_1" / "model.pt").items():
        assert torch.equal(v, weight0[n]), n  # rewinding to step 0 is to init


def test_image_folder_data(tmp_path, bundled):
    _, stimuli = bundled
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        for i in range(5):
            stimuli.load_image(i + (5 if c == "b" else 0)).save(tmp_path / c / f"{i}.png")
    d = load_labelled_images(str(tmp_path), 24, MEAN, STD, 0.2, 0)
    assert d.classes == ["a", "b"]
    assert d.x_train.shape == (8, 3, 24, 24) and d.x_test.shape == (2, 3, 24, 24)
    (tmp_path / "c").mkdir()
    with pytest.raises(NeurozooError, match="no image files"):
        load_labelled_images(str(tmp_path), 24, MEAN, STD, 0.2, 0)
