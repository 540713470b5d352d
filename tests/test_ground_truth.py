"""Ground truth: neuroids planted as noisy linear readouts of one known layer."""

import numpy as np
import torch

from neurozoo.data import make_responses, split_half_reliability
from neurozoo.features import extract_summaries, preprocess_stimuli
from neurozoo.models import load_model
from neurozoo.scoring import ScoringConfig, score_model

LAYERS = ["layer1.1", "layer2.1", "layer3.1", "layer4.1", "avgpool"]
PLANTED = "layer3.1"


def test_pipeline_recovers_the_planted_layer(bundled):
    _, stimuli = bundled
    loaded = load_model("torchvision:resnet18@random:0")
    summaries = extract_summaries(loaded, stimuli, layers=LAYERS, progress=False)

    # explicit features of the planted layer
    feats = {}
    mod = dict(loaded.module.named_modules())[PLANTED]
    h = mod.register_forward_hook(lambda m, i, o: feats.setdefault("x", o.clone()))
    with torch.no_grad():
        loaded.module(preprocess_stimuli(stimuli, loaded.preprocessing))
    h.remove()
    x = feats["x"].reshape(len(stimuli), -1).double().numpy()

    rng = np.random.default_rng(0)
    n_neuroids, n_trials, sigma = 120, 20, 2.0
    # Readouts of the layer's 20 leading principal components: linear in its
    # features, and learnable from ~90 training stimuli.
    xc = x - x.mean(0)
    _, sv, vt = np.linalg.svd(xc, full_matrices=False)
    readout = vt[:20].T / sv[:20] @ rng.normal(size=(20, n_neuroids))
    signal = xc @ readout
    signal = (signal - signal.mean(0)) / signal.std(0)  # unit variance per neuroid
    values = signal[None] + sigma * rng.normal(size=(n_trials, *signal.shape))
    responses = make_responses(values, stimuli.stimulus_ids,
                               [str(j) for j in range(n_neuroids)],
                               ["VISp"] * 60 + ["VISl"] * 60, [0] * n_neuroids)
    rel = split_half_reliability(responses, n_splits=20, seed=0)
    implied = 1.0 / (1.0 + sigma**2 / n_trials)  # reliability the noise implies
    assert abs(np.median(rel) - implied) < 0.05

    table, per_neuroid = score_model(summaries, responses, rel,
                                     ScoringConfig(n_bootstrap=50, reliability_threshold=0.3),
                                     loaded.spec.model_id)
    ridge = table[table.metric == "ridge_r"]
    for area in ("VISp", "VISl"):
        best = ridge[(ridge.area == area) & (ridge.selection == "best_heldout")]
        assert best.layer.item() == PLANTED
        by_layer = ridge[(ridge.area == area) & (ridge.selection == "layer")]
        assert by_layer.sort_values("value").layer.iloc[-1] == PLANTED
        # the raw score approaches the ceiling sqrt(reliability) the noise implies
        assert best.value.item() > 0.85 * np.sqrt(implied)
        corrected = table[(table.metric == "ridge_r_corrected") & (table.area == area)
                          & (table.selection == "best_heldout")]
        assert 0.85 < corrected.value.item() < 1.05
