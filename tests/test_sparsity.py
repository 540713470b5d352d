"""Masks, pruning criteria and k-WTA against slow references: brute-force
loops, finite differences and the explicit Hessian from autograd."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from neurozoo.errors import NeurozooError
from neurozoo.models import load_model
from neurozoo.sparsity import (
    KWinners,
    apply_masks,
    grasp_scores,
    magnitude_scores,
    masks_density,
    masks_from_scores,
    prunable_weights,
    random_scores,
    snip_scores,
    sparsity_report,
)


def _tiny(seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(2, 3, 3), nn.Tanh(), nn.Flatten(), nn.Linear(3 * 4 * 4, 5),
        nn.Tanh(), nn.Linear(5, 4),
    ).to(dtype)
    x = torch.randn(6, 2, 6, 6, dtype=dtype)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    return net, x, y


def test_prunable_weights_are_conv_and_linear_in_order():
    net, _, _ = _tiny()
    assert list(prunable_weights(net)) == ["0.weight", "3.weight", "5.weight"]
    with pytest.raises(NeurozooError, match="no convolution or linear"):
        prunable_weights(nn.Sequential(nn.ReLU()))


def test_global_masks_keep_the_top_scores_brute_force():
    gen = torch.Generator().manual_seed(3)
    scores = {"a": torch.rand(4, 5, generator=gen), "b": torch.rand(7, generator=gen)}
    for density in (0.1, 0.37, 0.5, 1.0):
        masks = masks_from_scores(scores, density)
        flat = np.concatenate([scores["a"].numpy().ravel(), scores["b"].numpy()])
        kept = np.concatenate([masks["a"].numpy().ravel(), masks["b"].numpy()])
        k = round(density * flat.size)
        assert kept.sum() == k
        expected = np.zeros(flat.size, bool)
        expected[np.argsort(-flat, kind="stable")[:k]] = True
        np.testing.assert_array_equal(kept, expected)


def test_layer_masks_and_ties_and_current():
    scores = {"a": torch.tensor([1.0, 1.0, 1.0, 0.0]), "b": torch.tensor([5.0, 4.0])}
    m = masks_from_scores(scores, 0.5, scope="layer")
    assert m["a"].tolist() == [True, True, False, False]  # ties: earlier first
    assert m["b"].tolist() == [True, False]
    # a weight pruned before stays pruned, even with the highest score
    cur = {"a": torch.tensor([False, True, True, True]), "b": torch.tensor([True, True])}
    g = masks_from_scores({"a": torch.tensor([9.0, 1, 2, 3]), "b": torch.tensor([0.5, 4])},
                          0.5, current=cur)
    assert g["a"].tolist() == [False, False, True, True]
    assert g["b"].tolist() == [False, True]
    with pytest.raises(NeurozooError, match="more weights than the current"):
        masks_from_scores(scores, 0.9, current=cur | {"a": torch.zeros(4, dtype=bool)})
    with pytest.raises(NeurozooError, match="density"):
        masks_from_scores(scores, 0.0)
    with pytest.raises(NeurozooError, match="scope"):
        masks_from_scores(scores, 0.5, scope="row")


def test_apply_masks_and_report():
    net, _, _ = _tiny()
    masks = masks_from_scores(magnitude_scores(net), 0.3)
    apply_masks(net, masks)
    rows = sparsity_report(net)
    assert sum(r["nonzero"] for r in rows) == round(0.3 * sum(r["n"] for r in rows))
    assert masks_density(masks) == pytest.approx(
        round(0.3 * sum(r["n"] for r in rows)) / sum(r["n"] for r in rows))
    w = prunable_weights(net)
    for name, mask in masks.items():
        assert torch.all(w[name][~mask] == 0)


def test_random_scores_are_seeded():
    net, _, _ = _tiny()
    a, b, c = random_scores(net, 1), random_scores(net, 1), random_scores(net, 2)
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert not torch.equal(a["0.weight"], c["0.weight"])


def _gated_loss(net, x, y, gates, temperature=1.0):
    """The loss with each prunable weight multiplied by its gate."""
    params = {n: w * gates[n] if n in gates else w
              for n, w in net.named_parameters()}
    out = torch.func.functional_call(net, params, (x,))
    return F.cross_entropy(out / temperature, y)


def test_snip_equals_finite_difference_of_the_gates():
    net, x, y = _tiny()
    scores = snip_scores(net, [(x[:4], y[:4]), (x[4:], y[4:])])
    weights = prunable_weights(net)
    gates = {n: torch.ones_like(w) for n, w in weights.items()}
    eps = 1e-6
    for name in weights:
        flat = gates[name].view(-1)
        for j in range(0, flat.numel(), max(1, flat.numel() // 7)):
            flat[j] += eps
            up = _gated_loss(net, x, y, gates)
            flat[j] -= 2 * eps
            down = _gated_loss(net, x, y, gates)
            flat[j] += eps
            fd = abs(float(up.detach() - down.detach()) / (2 * eps))
            assert float(scores[name].view(-1)[j]) == pytest.approx(fd, rel=1e-5,
                                                                    abs=1e-9)


def test_grasp_hessian_gradient_product_matches_the_explicit_hessian():
    net, x, y = _tiny(seed=1)
    T = 3.0
    weights = prunable_weights(net)
    names = list(weights)
    shapes = [weights[n].shape for n in names]
    sizes = [weights[n].numel() for n in names]
    flat0 = torch.cat([weights[n].detach().flatten() for n in names])

    def loss_of(flat):
        parts = torch.split(flat, sizes)
        params = dict(net.named_parameters())
        params.update({n: p.view(s) for n, p, s in zip(names, parts, shapes)})
        return F.cross_entropy(torch.func.functional_call(net, params, (x,)) / T, y)

    g = torch.autograd.functional.jacobian(loss_of, flat0)
    H = torch.autograd.functional.hessian(loss_of, flat0)
    expected = flat0 * (H @ g)
    scores = grasp_scores(net, [(x[:3], y[:3]), (x[3:], y[3:])], temperature=T)
    got = torch.cat([scores[n].flatten() for n in names])
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-12)


def test_scoring_leaves_batch_norm_statistics_and_mode_alone():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                        nn.Flatten(), nn.Linear(4 * 6 * 6, 3)).eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x, y = torch.randn(5, 3, 8, 8), torch.tensor([0, 1, 2, 0, 1])
    snip_scores(net, [(x, y)])
    grasp_scores(net, [(x, y)])
    assert not net.training
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in net.parameters())
    with pytest.raises(NeurozooError, match="at least one batch"):
        snip_scores(net, [])


def test_kwinners_matches_a_loop():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 5, 5, generator=gen)
    for density in (0.01, 0.1, 0.5, 1.0):
        out = KWinners(density)(x)
        n = 3 * 5 * 5
        k = max(1, round(density * n))
        for i in range(4):
            v = x[i].flatten()
            thr = sorted(v.tolist(), reverse=True)[k - 1]
            expected = torch.where(v >= thr, v, torch.zeros_like(v))
            assert torch.equal(out[i].flatten(), expected)
    with pytest.raises(NeurozooError, match="density"):
        KWinners(0.0)


def test_zoo_transforms():
    base = "torchvision:resnet18@random:0"
    dense = load_model(base).module
    lp = load_model(base + "+layerprune:0.75").module
    for r in sparsity_report(lp):
        assert r["nonzero"] == r["n"] - round(0.75 * r["n"])
    dw = prunable_weights(dense)
    for name, w in prunable_weights(lp).items():
        assert dw[name].abs()[w != 0].min() >= dw[name].abs()[w == 0].max()
    rp = load_model(base + "+randprune:0.5")
    assert rp.weights_sha256 == load_model(base + "+randprune:0.5").weights_sha256
    masks = masks_from_scores(random_scores(dense, 0), 0.5)
    n = sum(m.numel() for m in masks.values())
    assert sum(int(m.sum()) for m in masks.values()) == n - round(0.5 * n)
    for name, w in prunable_weights(rp.module).items():
        assert torch.equal(w, dw[name] * masks[name])
    kw = load_model(base + "+kwta:0.05").module
    assert sum(isinstance(m, KWinners) for m in kw.modules()) == 9
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        act = kw.relu(kw.bn1(kw.conv1(x)))
    assert int((act[0] != 0).sum()) == round(0.05 * act[0].numel())
    with pytest.raises(NeurozooError, match="density in"):
        load_model(base + "+kwta:0")
    with pytest.raises(NeurozooError, match="fraction in"):
        load_model(base + "+layerprune:1")


def test_the_stage_registry_keeps_what_each_paper_keeps():
    from neurozoo.sparsity.saliency import SALIENCIES

    net, x, y = _tiny(seed=2)
    batches = [(x, y)]
    expected = {"magnitude": magnitude_scores(net), "random": random_scores(net, 4),
                "snip": snip_scores(net, batches), "grasp": grasp_scores(net, batches)}
    for name, ref in expected.items():
        got = SALIENCIES[name](net, batches, 4)
        assert all(torch.equal(got[n], ref[n]) for n in ref), name
    # GraSP keeps the highest w * Hg, i.e. removes the largest -w * Hg
    masks = masks_from_scores(expected["grasp"], 0.5)
    flat = torch.cat([s.flatten() for s in expected["grasp"].values()])
    kept = torch.cat([m.flatten() for m in masks.values()])
    assert flat[kept].min() >= flat[~kept].max()


def test_kwta_models_have_their_own_cache_entries(small_dataset, tmp_path, cache_env):
    import json

    import pandas as pd

    from neurozoo.cli import main
    from neurozoo.features import architecture_tag

    plain_id = "torchvision:alexnet@random:0"
    kwta_id = plain_id + "+kwta:0.05"
    plain, kw = load_model(plain_id), load_model(kwta_id)
    # same weights, other forward code: the weights' hash cannot tell them apart
    assert plain.weights_sha256 == kw.weights_sha256
    assert architecture_tag(plain) != architecture_tag(kw)
    assert architecture_tag(load_model(plain_id + "+magprune:0.5")) == \
        architecture_tag(plain)
    tables = {}
    for model in (plain_id, kwta_id, plain_id):  # the plain model twice: unspoiled
        cfg = tmp_path / "run.json"
        cfg.write_text(json.dumps({
            "data": str(small_dataset / "responses.nc"), "models": [model],
            "layers": {model: ["features.1", "features.4"]}, "reliability_splits": 5,
            "scoring": {"n_bootstrap": 10, "n_folds": 3, "methods": ["ridge"]}}))
        out = tmp_path / f"out{len(tables)}"
        assert main(["-q", "run", "--config", str(cfg), "--out", str(out)]) == 0
        t = pd.read_csv(out / "scores.csv")
        tables[len(tables)] = t[(t.metric == "ridge_r") & (t.selection == "layer")
                                ].sort_values(["area", "layer"]).value.to_numpy()
    assert not np.allclose(tables[0], tables[1])
    np.testing.assert_array_equal(tables[0], tables[2])
