"""The pipeline's stages, each a Python entrypoint with explicit inputs and
outputs, and :func:`run`, which chains them in one process.

Run folder layout (``OUT``)::

    OUT/data/responses.nc        NeuralResponses (validated copy)
    OUT/data/stimuli.csv         the stimulus set (absolute paths to the images, so
                                 that OUT can be moved)
    OUT/data/neuroids.csv        per-neuroid reliability and metadata
    OUT/features/<model>.json    layer list, cache keys, weights provenance, and
                                 the feature path (gram, or primal: projections)
    OUT/scores/<model>.csv       tidy scores of one model
    OUT/scores/<model>.nc        per-neuroid, per-layer scores of one model
    OUT/scores.csv               tidy table, all models
    OUT/neuroid_scores.csv       per-neuroid held-out scores, all models
    OUT/provenance.json          version, config, checksums, seeds, timings
    OUT/figures/*.png

Every file is written atomically. A stage whose output exists and was made
from the same inputs (a key stored beside it) is skipped, so an interrupted
run resumes where it stopped.
"""

from __future__ import annotations

import json
import logging
import platform
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd

import neurozoo
from neurozoo.config import RunConfig
from neurozoo.data.bundled import default_bundle_path, load_bundled
from neurozoo.data.responses import (
    load_responses,
    save_responses,
    split_half_reliability,
)
from neurozoo.data.stimuli import check_match, load_stimulus_set
from neurozoo.errors import NeurozooError
from neurozoo.features import (
    LayerProjection,
    LayerSummary,
    _probe,
    architecture_tag,
    extract_auto,
    projection_key,
    resolve_device,
    summary_key,
)
from neurozoo.io import (
    atomic_path,
    check_output_dir,
    read_json,
    sha256_file,
    stable_hash,
    write_json,
)
from neurozoo.mapping.ridge import MIN_TEST_STIMULI
from neurozoo.models.zoo import load_model, resolve_model_id
from neurozoo.scoring import SCORING_VERSION, score_model

__all__ = [
    "model_slug",
    "load_inputs",
    "preflight",
    "stage_prepare",
    "stage_extract",
    "stage_score",
    "stage_aggregate",
    "stage_plot",
    "run",
]

log = logging.getLogger(__name__)


def model_slug(model_id: str) -> str:
    """A file-name-safe, collision-free name for a model id."""
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", model_id).strip("_")[:80]
    return f"{base}-{stable_hash(model_id, 6)}"


def load_inputs(config: RunConfig):
    """Load and validate the responses and stimuli the config names.

    Every image is decoded once here, so a missing or corrupt file fails
    before any result is written.

    Returns
    -------
    responses : NeuralResponses
    stimuli : StimulusSet
    data_sha256 : str
        Checksum of the data (bundle manifest or netCDF file).
    """
    if config.data is None:
        if config.stimuli is not None:
            raise NeurozooError("config field 'stimuli' needs 'data' as well")
        responses, stimuli = load_bundled(areas=config.areas)
        digest = responses.attrs["bundle_sha256"]
    else:
        from neurozoo.data.schema import find_stimuli

        data = Path(config.data)
        if data.is_dir():
            data = data / "responses.nc"
        responses = load_responses(data)
        stim_path = (Path(config.stimuli) if config.stimuli
                     else find_stimuli(data, responses.attrs))
        if stim_path is None:
            raise NeurozooError(
                f"{data}: no stimulus folder found (looked for stimuli/ and "
                "stimuli.csv beside it); pass --stimuli"
            )
        stimuli = load_stimulus_set(stim_path)
        digest = sha256_file(data)
        if config.areas is not None:
            have = set(np.asarray(responses.coords["area"].values).astype(str))
            unknown = sorted(set(config.areas) - have)
            if unknown:
                raise NeurozooError(
                    f"{data}: unknown area(s) {unknown}; the data have {sorted(have)}"
                )
            responses = responses.isel(
                neuroid=np.isin(responses.coords["area"].values, config.areas))
        check_match(responses, stimuli, str(data))
    stimuli.verify()
    for i in range(len(stimuli)):
        stimuli.load_image(i)
    if config.scoring.n_folds > len(stimuli) // MIN_TEST_STIMULI:
        raise NeurozooError(
            f"config field 'scoring.n_folds': {config.scoring.n_folds} folds for "
            f"{len(stimuli)} stimuli; each test fold needs at least {MIN_TEST_STIMULI} "
            f"stimuli, so at most {len(stimuli) // MIN_TEST_STIMULI} folds")
    if len(stimuli) > config.max_gram_stimuli and "ridge" not in config.scoring.methods:
        raise NeurozooError(
            f"config field 'scoring.methods': {len(stimuli)} stimuli exceed "
            f"max_gram_stimuli ({config.max_gram_stimuli}), so layers are randomly "
            "projected (primal path) and only ridge can score them; add ridge")
    return responses, stimuli, digest


def preflight(config: RunConfig) -> None:
    """Check every model id, its weights and its chosen layers, and the
    mapping device, before work."""
    import torch

    for label, device in (("config field 'device' (--device)", config.device),
                          ("config field 'scoring.device'", config.scoring.device)):
        try:
            resolve_device(device)
        except NeurozooError as exc:
            raise NeurozooError(f"{label}: {exc}") from None

    layer_keys: dict[str, list] = {}
    for key, names in config.layers.items():
        mid = resolve_model_id(key).model_id
        if mid in layer_keys and list(layer_keys[mid]) != list(names):
            raise NeurozooError(
                f"config field 'layers': two entries for {mid} disagree")
        layer_keys[mid] = names
    ids = model_ids(config)
    unknown_layer_models = sorted(set(layer_keys) - set(ids))
    if unknown_layer_models:
        raise NeurozooError(
            f"config field 'layers' names model(s) not in 'models': "
            f"{unknown_layer_models}"
        )
    for mid in ids:
        loaded = load_model(mid)
        if mid in layer_keys:
            x = torch.zeros((1, 3, loaded.preprocessing.crop_size,
                             loaded.preprocessing.crop_size))
            try:
                probed = _probe(loaded.module, layer_keys[mid], x)
            except NeurozooError as exc:
                raise NeurozooError(f"config field 'layers', model {mid}: {exc}") from None
            for name in layer_keys[mid]:
                if name not in probed:
                    raise NeurozooError(f"layer '{name}' of {mid} never runs")
        del loaded


def _need(path, stage: str) -> Path:
    """``path``, or a one-line error saying which stage makes it."""
    path = Path(path)
    if not path.is_file():
        raise NeurozooError(f"{path} is missing: run the {stage} stage first")
    return path


def model_ids(config: RunConfig) -> list[str]:
    """The config's models as canonical ids, duplicates (e.g. an alias and its
    id) removed, order kept."""
    return list(dict.fromkeys(resolve_model_id(m).model_id for m in config.models))


def check_reliable(responses, reliability: np.ndarray, threshold: float) -> None:
    """Raise when no neuroid reaches the reliability threshold; warn per area."""
    areas = np.asarray(responses.coords["area"].values).astype(str)
    ok = np.isfinite(reliability) & (reliability >= threshold)
    if not ok.any():
        best = np.nanmax(reliability) if np.isfinite(reliability).any() else float("nan")
        raise NeurozooError(
            f"no neuroid reaches the reliability threshold {threshold} (highest "
            f"{best:.3f}); lower scoring.reliability_threshold or add trials")
    for area in sorted(set(areas)):
        if not ok[areas == area].any():
            log.warning("area %s has no neuroid with reliability >= %s: not scored",
                        area, threshold)


def _layers_for(config: RunConfig, model_id: str) -> list[str] | None:
    for key, names in config.layers.items():
        if resolve_model_id(key).model_id == model_id:
            return list(names)
    return None


# ---------------------------------------------------------------- stages

def stage_prepare(config: RunConfig, out_dir: str | Path, inputs=None) -> dict:
    """Validate the inputs; write responses, stimuli and reliabilities.

    Outputs ``out_dir/responses.nc``, ``stimuli.csv`` and ``neuroids.csv``.
    ``inputs``, the result of :func:`load_inputs`, skips loading them again.
    """
    out_dir = Path(out_dir)
    responses, stimuli, digest = inputs if inputs is not None else load_inputs(config)
    key = stable_hash({"data": digest, "areas": config.areas,
                       "splits": config.reliability_splits,
                       "threshold": config.scoring.reliability_threshold,
                       "seed": config.scoring.seed, "stimuli": stimuli.identity()})
    stamp = out_dir / "prepare.json"
    if stamp.is_file() and read_json(stamp).get("key") == key and all(
        (out_dir / f).is_file() for f in ("responses.nc", "stimuli.csv", "neuroids.csv")
    ):
        log.info("prepare: up to date")
        return read_json(stamp)
    rel = split_half_reliability(responses, config.reliability_splits,
                                 config.scoring.seed)
    check_reliable(responses, rel, config.scoring.reliability_threshold)
    if stamp.exists():  # outputs are about to change: the old stamp is void
        stamp.unlink()
    save_responses(responses, out_dir / "responses.nc")
    # absolute: the images stay where they are, and OUT may be moved
    stimuli.save_csv(out_dir / "stimuli.csv", absolute=True)
    table = pd.DataFrame({
        name: np.asarray(coord.values)
        for name, coord in responses.coords.items() if coord.dims == ("neuroid",)
    })
    table["reliability"] = rel
    table["reliable"] = rel >= config.scoring.reliability_threshold
    with atomic_path(out_dir / "neuroids.csv") as tmp:
        table.to_csv(tmp, index=False)
    info = {
        "key": key, "data_sha256": digest,
        "data_source": str(config.data or default_bundle_path()),
        "stimuli_source": config.stimuli,
        "areas": config.areas,
        "stimuli_sha256": stimuli.identity(),
        "n_stimuli": len(stimuli), "n_neuroids": int(responses.sizes["neuroid"]),
        "n_trials": int(responses.sizes["trial"]),
        "neuroids_per_area": table.groupby("area").size().to_dict(),
        "reliable_per_area": table.groupby("area")["reliable"].sum().to_dict(),
    }
    write_json(stamp, info)
    return info


def stage_extract(config: RunConfig, data_dir: str | Path, model: str,
                  out_file: str | Path, progress: bool = True) -> dict:
    """Extract (or reuse from the cache) one model's layer summaries.

    Up to ``config.max_gram_stimuli`` stimuli, each layer is reduced to its
    exact Gram summary; above, to a streamed sparse random projection (the
    primal path; :func:`neurozoo.features.extract_auto` logs the choice).
    Both are cached in ``cache_dir/summaries`` under keys that differ.

    Writes ``out_file``, a JSON index: the model's provenance, the path taken
    (``"gram"`` or ``"primal"``, with the projection's ``k`` and seed) and,
    per layer, its cache file, its ``kind`` (``"summary"`` or
    ``"projection"``), shape and relative depth. With
    ``config.save_features``, the raw features also go to the folder named
    like ``out_file`` without ``.json`` (:func:`neurozoo.rawfeatures.save_features`).
    """
    from neurozoo.mapping.primal import jl_dimension

    stimuli = load_stimulus_set(_need(Path(data_dir) / "stimuli.csv", "prepare"))
    stimuli.verify()
    loaded = load_model(model)
    raw = None
    if config.save_features:  # first: its disk check comes before any long work
        from neurozoo.rawfeatures import save_features

        out = Path(out_file)  # out/m.json -> out/m/; out/m (no suffix) -> out/m-raw/
        raw = out.with_suffix("") if out.suffix else out.with_name(out.name + "-raw")
        save_features(loaded, stimuli, raw, layers=_layers_for(config, loaded.spec.model_id),
                      batch_size=config.batch_size, device=config.device,
                      progress=progress, layout=config.layout)
    t0 = time.perf_counter()
    cache = config.cache_path / "summaries"
    features = extract_auto(
        loaded, stimuli, layers=_layers_for(config, loaded.spec.model_id),
        cache_dir=cache, batch_size=config.batch_size,
        device=config.device, memory_budget=config.memory_budget_gb * 2**30,
        progress=progress, max_gram_stimuli=config.max_gram_stimuli,
        n_components=config.projection_components, seed=config.projection_seed,
        layout=config.layout,
    )
    seconds = time.perf_counter() - t0  # the extraction's, not the raw features'
    prep = loaded.preprocessing.to_dict()
    stim_id = stimuli.identity()
    arch = architecture_tag(loaded)
    primal = any(isinstance(f, LayerProjection) for f in features.values())
    k = (config.projection_components if config.projection_components is not None
         else jl_dimension(len(stimuli))) if primal else None

    def key(layer: str) -> str:
        if primal:
            return projection_key(loaded.weights_sha256, prep, stim_id, layer, arch, k,
                                  config.projection_seed)
        return summary_key(loaded.weights_sha256, prep, stim_id, layer, arch)

    index = {
        "model": loaded.provenance(),
        # the settings this extraction ran with (stage aggregate records them)
        "extraction": {
            "layers": _layers_for(config, loaded.spec.model_id),
            "batch_size": config.batch_size,
            "device": str(resolve_device(config.device)),  # "auto" resolved
            "layout": config.layout,  # per layer: made_by's "layout", as it ran
            "cache_dir": str(cache),
            "memory_budget_gb": config.memory_budget_gb,
            "max_gram_stimuli": config.max_gram_stimuli,
            "projection_components": config.projection_components,
            "projection_seed": config.projection_seed,
            "save_features": config.save_features,
        },
        # raw float32 features (config save_features), one .npy per layer
        "raw_features": str(raw) if raw is not None else None,
        "stimuli_sha256": stim_id,
        "seconds": seconds,
        "path": "primal" if primal else "gram",
        **({"projection": {"k": k, "seed": config.projection_seed}} if primal else {}),
        "layers": [
            {"layer": s.layer, "index": s.index, "relative_depth": s.relative_depth,
             "n_features": s.n_features, "shape": list(s.shape),
             "kind": "projection" if primal else "summary",
             "file": str(cache / f"{key(s.layer)}.npz"),
             # the run that made it: this one, or an earlier one whose cache
             # entry was reused (empty for entries older than this field)
             "made_by": _made_by(s.meta)}
            for s in features.values()
        ],
    }
    write_json(out_file, index)
    return index


#: Per layer, what stage extract's index reports of the run that made its cache entry.
_MADE_BY = ("device", "batch_size", "layout", "neurozoo_version", "created_utc")


def _made_by(meta: dict) -> dict:
    """The :data:`_MADE_BY` fields of a cache entry's meta that it has; an
    entry written before they were recorded gives ``{}``."""
    if not meta.get("created_utc"):
        return {}
    return {name: meta[name] for name in _MADE_BY if meta.get(name) is not None}


def stage_score(config: RunConfig, data_dir: str | Path, features_file: str | Path,
                out_csv: str | Path) -> pd.DataFrame:
    """Score one model (its features index) against the prepared data.

    Writes ``out_csv`` (tidy rows) and a ``.nc`` of per-neuroid scores beside.
    """
    data_dir, out_csv = Path(data_dir), Path(out_csv)
    index = read_json(_need(features_file, "extract"))
    prepared = read_json(_need(data_dir / "prepare.json", "prepare"))
    if index["stimuli_sha256"] != prepared["stimuli_sha256"]:
        raise NeurozooError(
            f"{features_file}: features were extracted from other stimuli than the "
            f"prepared data in {data_dir}; rerun the extract stage")
    key = stable_hash({"scoring": config.to_dict()["scoring"], "data": prepared["key"],
                       "layers": [entry["file"] for entry in index["layers"]],
                       "version": SCORING_VERSION})
    stamp = out_csv.with_suffix(".json")
    if (stamp.is_file() and read_json(stamp).get("key") == key and out_csv.is_file()
            and out_csv.with_suffix(".nc").is_file()):
        log.info("score %s: up to date", index["model"]["model_id"])
        return pd.read_csv(out_csv)
    if stamp.exists():
        stamp.unlink()
    responses = load_responses(data_dir / "responses.nc")
    neuroids = pd.read_csv(data_dir / "neuroids.csv")
    if not np.array_equal(neuroids["neuroid_id"].astype(str).to_numpy(),
                          np.asarray(responses.coords["neuroid_id"].values).astype(str)):
        raise NeurozooError(
            f"{data_dir}: neuroids.csv and responses.nc disagree; rerun prepare")
    summaries = {}
    for entry in index["layers"]:
        path = Path(entry["file"])
        if not path.is_file():
            raise NeurozooError(
                f"{features_file}: cache file {path} for layer {entry['layer']} is "
                "missing; rerun the extract stage"
            )
        kind = entry.get("kind", "summary")
        if kind not in ("summary", "projection"):
            raise NeurozooError(f"{features_file}: layer {entry['layer']} has unknown "
                                f"kind '{kind}'; rerun the extract stage")
        load = LayerProjection.load if kind == "projection" else LayerSummary.load
        try:
            summaries[entry["layer"]] = load(path)
        except NeurozooError as exc:
            raise NeurozooError(f"{features_file}: layer {entry['layer']}: {exc}; rerun "
                                "the extract stage") from None
    t0 = time.perf_counter()
    table, per_neuroid = score_model(summaries, responses,
                                     neuroids["reliability"].to_numpy(),
                                     config.scoring, index["model"]["model_id"])
    if table.empty:
        raise NeurozooError(f"{index['model']['model_id']}: no area has reliable neuroids")
    table.insert(1, "trained", index["model"]["weights"] != "random")
    provenance = {
        "neurozoo_version": neurozoo.__version__,
        "model_id": index["model"]["model_id"],
        "weights_sha256": index["model"]["weights_sha256"],
        "data_sha256": prepared["data_sha256"],
        "stimuli_sha256": prepared["stimuli_sha256"],
        "scoring": config.to_dict()["scoring"],
        "seed": config.scoring.seed,
        "feature_path": per_neuroid.attrs["feature_path"],
        "methods_skipped": {
            m: [x for x in per_neuroid.attrs["projected_layers"].split(",") if x]
            for m in per_neuroid.attrs["gram_only_methods_skipped"].split(",") if m
        },
    }
    per_neuroid.attrs.update({k: json.dumps(v) if isinstance(v, dict) else v
                              for k, v in provenance.items()})
    with atomic_path(out_csv.with_suffix(".nc")) as tmp:
        per_neuroid.to_netcdf(tmp, engine="h5netcdf")
    with atomic_path(out_csv) as tmp:
        table.to_csv(tmp, index=False)
    write_json(stamp, {"key": key, "seconds": time.perf_counter() - t0,
                       "provenance": provenance})
    return table


def stage_aggregate(config: RunConfig, score_files: list, out_dir: str | Path,
                    extra_provenance: dict | None = None) -> pd.DataFrame:
    """Concatenate per-model tables; write the table, per-neuroid scores and
    provenance into ``out_dir``.

    The provenance describes what was aggregated, not the config this stage
    was given: its ``config.models`` and ``config.areas`` are the model ids
    and areas found in the score tables; ``config.scoring`` (and ``seed``)
    the settings the score files were made with; the extraction settings
    (``batch_size``, ``device``, ``memory_budget_gb``, ``max_gram_stimuli``,
    ``projection_*``) those of the feature indexes, and ``config.layers``
    the layers each model was scored on; ``config.data`` and
    ``config.stimuli`` the sources ``data/prepare.json`` names. Per model,
    ``made_by`` lists the runs (device, batch size, version, time) that made
    its cached summaries, which can be earlier runs. Settings that
    differ between models are each recorded under ``models``, and the
    ``config`` field is then null, with a warning.
    """
    import xarray as xr

    out_dir = Path(out_dir)
    tables, neuroid_rows = [], []
    models: dict[str, dict] = {}
    for f in score_files:
        f = _need(Path(f), "score")
        _need(f.with_suffix(".nc"), "score")
        tables.append(pd.read_csv(f))
        with xr.open_dataset(f.with_suffix(".nc"), engine="h5netcdf") as ds:
            rel = ds["reliability"].values
            cols = {
                "model_id": ds.attrs["model_id"],
                "neuroid_id": ds["neuroid_id"].values,
                "area": ds["area"].values, "specimen_id": ds["specimen_id"].values,
                "reliability": rel, "reliable": ds["reliable"].values,
            }
            if "ridge_r_heldout" in ds:  # absent when ridge is not among the methods
                r = ds["ridge_r_heldout"].values
                with np.errstate(invalid="ignore", divide="ignore"):
                    cols.update({
                        "ridge_r_heldout": r,
                        "ridge_r_corrected_heldout": r / np.sqrt(rel),
                        "ridge_fev_heldout": r * np.abs(r) / rel,
                    })
            neuroid_rows.append(pd.DataFrame(cols))
            entry = models.setdefault(str(ds.attrs["model_id"]), {})
            if "scoring" in ds.attrs:  # what stage_score was run with
                entry["scoring"] = json.loads(ds.attrs["scoring"])
        feat = f.parent.parent / "features" / f.with_suffix(".json").name
        if feat.is_file():
            idx = read_json(feat)
            models.setdefault(idx["model"]["model_id"], {}).update({
                **idx["model"], "n_layers": len(idx["layers"]),
                "layers": [entry["layer"] for entry in idx["layers"]],
                "extraction": idx.get("extraction"),
                "extract_seconds": idx["seconds"],
                "feature_path": idx.get("path", "gram"),
                # the distinct runs that made the layers' cache entries
                "made_by": list({stable_hash(e["made_by"]): e["made_by"]
                                 for e in idx["layers"] if e.get("made_by")}.values())})
    table = pd.concat(tables, ignore_index=True)
    recorded = config.to_dict()
    recorded["models"] = [str(m) for m in dict.fromkeys(table["model_id"])]
    recorded["areas"] = [str(a) for a in dict.fromkeys(table["area"])]
    scorings = {mid: m["scoring"] for mid, m in models.items() if "scoring" in m}
    if len({stable_hash(s) for s in scorings.values()}) == 1:
        recorded["scoring"] = next(iter(scorings.values()))
    elif scorings:
        log.warning("aggregate: the score files were made with different scoring "
                    "settings (%s); provenance.json records each under 'models'",
                    ", ".join(sorted(scorings)))
        recorded["scoring"] = None
    extractions = {mid: m["extraction"] for mid, m in models.items()
                   if m.get("extraction")}
    if extractions:
        recorded["layers"] = {mid: m["layers"] for mid, m in models.items()
                              if "layers" in m}
        for name in next(iter(extractions.values())):
            if name == "layers":
                continue
            values = {stable_hash(e.get(name)) for e in extractions.values()}
            recorded[name] = (next(iter(extractions.values())).get(name)
                              if len(values) == 1 else None)
            if len(values) > 1:
                log.warning("aggregate: the models were extracted with different '%s'; "
                            "provenance.json records each under 'models'", name)
    prepared = out_dir / "data" / "prepare.json"
    prepare_info = read_json(prepared) if prepared.is_file() else None
    if prepare_info is not None:
        recorded["data"] = prepare_info.get("data_source")
        recorded["stimuli"] = prepare_info.get("stimuli_source")
    with atomic_path(out_dir / "scores.csv") as tmp:
        table.to_csv(tmp, index=False)
    with atomic_path(out_dir / "neuroid_scores.csv") as tmp:
        pd.concat(neuroid_rows, ignore_index=True).to_csv(tmp, index=False)
    import torch

    prov = {
        "neurozoo_version": neurozoo.__version__,
        "python": platform.python_version(), "torch": torch.__version__,
        "numpy": np.__version__, "platform": platform.platform(),
        "config": recorded,
        "seed": recorded["scoring"]["seed"] if recorded["scoring"] else None,
        "models": models,
    }
    if prepare_info is not None:
        prov["data"] = prepare_info
    prov.update(extra_provenance or {})
    write_json(out_dir / "provenance.json", prov)
    return table


def stage_plot(table_csv: str | Path, out_dir: str | Path) -> list[Path]:
    """Draw the figures of a scores table into ``out_dir``."""
    from neurozoo.plotting import plot_all

    return plot_all(pd.read_csv(_need(Path(table_csv), "aggregate")), Path(out_dir))


def summary_table(table: pd.DataFrame, metric: str = "ridge_r_corrected") -> pd.DataFrame:
    """Held-out best-layer scores: one row per model, one column per area."""
    sub = table[(table.metric == metric) & (table.selection == "best_heldout")]
    return sub.pivot_table(index="model_id", columns="area", values="value").round(3)


def run(config: RunConfig, out_dir: str | Path, progress: bool = True) -> pd.DataFrame:
    """Run every stage in this process; returns the tidy scores table."""
    out_dir = Path(out_dir)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    inputs = load_inputs(config)  # fail on bad data before writing anything
    for sub in ("data", "features", "scores", "figures"):
        check_output_dir(out_dir / sub)
    if config.save_features:
        for mid in model_ids(config):
            check_output_dir(out_dir / "features" / model_slug(mid))
    preflight(config)
    timings["preflight"] = time.perf_counter() - t0

    t = time.perf_counter()
    stage_prepare(config, out_dir / "data", inputs)
    del inputs
    timings["prepare"] = time.perf_counter() - t
    score_files = []
    for mid in model_ids(config):
        slug = model_slug(mid)
        t = time.perf_counter()
        stage_extract(config, out_dir / "data", mid,
                      out_dir / "features" / f"{slug}.json", progress)
        timings[f"extract {mid}"] = time.perf_counter() - t
        t = time.perf_counter()
        stage_score(config, out_dir / "data", out_dir / "features" / f"{slug}.json",
                    out_dir / "scores" / f"{slug}.csv")
        timings[f"score {mid}"] = time.perf_counter() - t
        score_files.append(out_dir / "scores" / f"{slug}.csv")
    t = time.perf_counter()
    table = stage_aggregate(config, score_files, out_dir)
    stage_plot(out_dir / "scores.csv", out_dir / "figures")
    timings["aggregate+plot"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    prov = read_json(out_dir / "provenance.json")
    prov["timings_s"] = timings
    write_json(out_dir / "provenance.json", prov)
    return table

