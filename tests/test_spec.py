"""The run specification: every pipeline setting declared once, and everything else reading it.

The command-line options of ``train`` and ``compare`` are generated from the fields (same name,
default, help); the comparison fingerprint is the spec serialised (and equals what folders made
before it hold); old bundles and run folders are read through one migration; the validators of the
library functions that take a setting directly are the field's own.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
import typer
from typer.testing import CliRunner

from imbvision.cli import app
from imbvision.errors import ConfigError
from imbvision.spec import (CompareConfig, RunSpec, TrainConfig, check_setting, flag_of, migrate_backbone,
                            migrate_config)
from imbvision._cli_spec import cli_fields


def _click_params(command: str) -> dict[str, click.Parameter]:
    group = typer.main.get_command(app)
    return {p.name: p for p in group.commands[command].params}


@pytest.mark.parametrize("model,command", [(TrainConfig, "train"), (CompareConfig, "compare")])
def test_every_cli_field_is_an_option_with_the_fields_default_and_help(model, command):
    params = _click_params(command)
    names = cli_fields(model, skip=("data",))
    assert "patch_layers" in names and "image_size" in names and "split_file" in names
    for name in names:
        f = model.model_fields[name]
        assert name in params, f"{command} lacks --{name}"
        p = params[name]
        assert p.help == f.description, name
        assert p.default == f.default, name
        assert flag_of(model, name) in p.opts, (name, p.opts)
    # what is not a CLI field is not an option (the command's own arguments aside)
    for name in set(model.model_fields) - set(names) - {"data", "out"}:
        assert name not in params, name


def test_train_and_compare_share_one_definition_of_every_pipeline_option():
    train, compare = _click_params("train"), _click_params("compare")
    for name in cli_fields(RunSpec, skip=("data",)):
        assert train[name].help == compare[name].help == RunSpec.model_fields[name].description
        assert train[name].default == compare[name].default == RunSpec.model_fields[name].default
        assert train[name].opts == compare[name].opts


def test_every_field_declares_help_and_what_is_valid_and_its_default_is_valid():
    for model in (RunSpec, TrainConfig, CompareConfig):
        model()  # every default valid together
        for name, f in model.model_fields.items():
            extra = f.json_schema_extra or {}
            assert f.description and extra.get("valid"), f"{model.__name__}.{name}"
            assert extra.get("key", "always") in ("always", "when-set", "never")


@pytest.mark.parametrize("field,value,message", [
    ("tiles", 1, "--tiles 1 invalid; use 0 (whole image only) or 2..6"),
    ("tiles", True, "--tiles True invalid"),
    ("image_size", 100000, "--image-size 100000 invalid; use an integer in 32..1024"),
    ("image_size", 16, "--image-size 16 invalid"),
    ("resize", "crop", "--resize 'crop' invalid; valid: stretch, keep-aspect"),
    ("patch_layers", "s4+s8", "--patch-layers 's4+s8' invalid; valid: s16+s32, s8+s16"),
    ("features", "tile", "--features 'tile' invalid; valid: auto, global, tiles, both"),
    ("calibration", "beta", "--calibration 'beta' invalid; valid: none, intercept, platt, isotonic"),
    ("threshold", "max-f2", "unknown threshold rule 'max-f2'"),
    ("val", 1.5, "--val 1.5 invalid; use a fraction in (0, 1)"),
    ("train_positive_rate", 1.0, "--train-positive-rate 1.0 invalid; use a value in [0, 1)"),
    ("split", "official-ish", "--split 'official-ish' invalid; valid: random, official"),
    ("max_synthetic", -1, "--max-synthetic -1 invalid; use an integer in 0..100000"),
    ("colour", "red", "unknown setting 'colour'"),
])
def test_a_bad_value_is_one_line_naming_the_option_and_what_is_valid(field, value, message):
    with pytest.raises(ConfigError) as exc:
        RunSpec(**{field: value})
    assert message in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize("model,field,value,message", [
    (TrainConfig, "mode", "ft", "--mode 'ft' invalid; valid: head, finetune"),
    (TrainConfig, "epochs", 0, "--epochs 0 invalid; use an integer in 1..100000"),
    (TrainConfig, "unfreeze", "some", "--unfreeze 'some' invalid; use 'all' or a number of last blocks"),
    (TrainConfig, "seed", -1, "--seed -1 invalid"),
    (CompareConfig, "seeds", 0, "--seeds 0 invalid; use an integer, 1 or more"),
    (CompareConfig, "mode", "finetune", "compare runs head mode"),
    (CompareConfig, "executor", "dask", "--executor 'dask' invalid; valid: local, ray"),
    (CompareConfig, "folds", 1, "--folds 1 invalid; use an integer, 2 or more"),
])
def test_the_command_settings_are_declared_the_same_way(model, field, value, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("+", r"\+")):
        model(**{field: value})


def test_contradictory_settings_name_both():
    with pytest.raises(ConfigError, match="--features tiles needs --tiles 2 or more"):
        RunSpec(features="tiles")
    with pytest.raises(ConfigError, match=r"--val 0.5 \+ --test 0.5 leave no training images"):
        RunSpec(val=0.5, test=0.5)
    with pytest.raises(ConfigError, match="--split official and --split-file both give the test set"):
        RunSpec(split="official", split_file="s.csv")


@pytest.mark.parametrize("field,values", [
    ("image_size", [31, 32, 224, 1024, 1025, 224.0, True, "224"]),
    ("tiles", [0, 1, 2, 6, 7, -2, False, 2.0]),
    ("resize", ["stretch", "keep-aspect", "Stretch", None, 1]),
    ("patch_layers", ["s16+s32", "s8+s16", "s8+s32", ""]),
])
def test_check_setting_agrees_with_the_spec_field(field, values):
    """Library functions (``embed_dataset``, ``patch_features``) check a setting by the field itself."""
    for v in values:
        try:
            RunSpec(**{field: v})
            spec_ok = True
        except ConfigError:
            spec_ok = False
        try:
            check_setting(field, v)
            lib_ok = True
        except ConfigError as exc:
            lib_ok = False
            assert str(exc).startswith(flag_of(RunSpec, field)), exc
        assert spec_ok == lib_ok, (field, v)


def test_a_path_is_taken_as_text_and_a_round_trip_is_identity(tmp_path):
    cfg = TrainConfig(data=tmp_path, split_file=tmp_path / "s.csv", cache_dir=tmp_path, tiles=2, resize="keep-aspect",
                      unfreeze=2, extra={"from_compare": "x"})
    assert cfg.data == str(tmp_path) and cfg.unfreeze == "2"
    d = json.loads(json.dumps(cfg.to_dict()))  # as config.json and model.json hold it
    assert TrainConfig.from_dict(d) == cfg
    assert cfg.replace(seed=3).seed == 3 and cfg.seed == 0
    with pytest.raises(ConfigError, match="--seed"):
        cfg.replace(seed=-3)


def test_old_run_folders_and_bundles_are_read_through_one_migration():
    # a config.json as written before --resize, --split, --split-file and --patch-layers existed
    old = {k: v for k, v in TrainConfig().to_dict().items() if k not in ("resize", "split", "split_file", "patch_layers")}
    old.update(recipe={"name": "ce"}, split_realised={"train": 0.6})
    cfg = TrainConfig.from_dict(old)
    assert (cfg.resize, cfg.split, cfg.split_file, cfg.patch_layers) == ("stretch", "random", None, "s8+s16")
    assert migrate_config({"x": 1}, RunSpec) == {"x": 1, "resize": "stretch", "split": "random", "split_file": None,
                                                 "patch_layers": "s8+s16"}
    with pytest.raises(ConfigError, match="unknown setting 'x'"):
        RunSpec.from_dict({"x": 1})
    b = {"name": "efficientnet_lite0", "image_size": 224, "tiles": 0, "features": "global"}
    assert migrate_backbone(b, "patches") == {**b, "resize": "stretch", "patch_layers": "s8+s16"}
    assert migrate_backbone(b, "global") == {**b, "resize": "stretch"}
    assert migrate_backbone({**b, "resize": "keep-aspect", "patch_layers": "s16+s32"}, "patches")["patch_layers"] == \
        "s16+s32"


def test_a_bundles_backbone_section_is_read_back_as_it_was_written():
    from imbvision.training.cell import FeatureSettings

    cfg = TrainConfig(image_size=320, resize="keep-aspect", tiles=2, patch_layers="s8+s16", weights="none",
                      extra={"resolution": {"image_size": 320}})
    for rep in ("global", "patches"):
        meta = {"backbone": {"name": "efficientnet_lite0", **cfg.backbone_record(rep)},
                "head": {"representation": rep} if rep != "global" else {}}
        fs = FeatureSettings.of_bundle(meta)
        assert (fs.image_size, fs.resize, fs.tiles, fs.kind, fs.weights) == (320, "keep-aspect", 2, "both", "none")
        assert fs.patch_layers == ("s8+s16" if rep == "patches" else "s16+s32")
        assert FeatureSettings.of_spec(cfg).patch_layers == "s8+s16"


def _fingerprint_as_before(c: CompareConfig, names: list[str]) -> dict:
    """``compare``'s config.json as the code before the run specification wrote it (commit 41c73ef)."""
    from imbvision._digest import sha256_file

    d = {"data": c.data, "strategies": names, "seeds": c.seeds, "folds": c.folds, "mode": c.mode,
         "positive": c.positive, "train_positive_rate": c.train_positive_rate, "backbone": c.backbone,
         "weights": c.weights, "image_size": c.image_size, "tiles": c.tiles, "features": c.feature_kind,
         "threshold": c.threshold, "calibration": c.calibration, "prior_correction": c.prior_correction,
         "val": c.val, "test": c.test, "max_synthetic": c.max_synthetic, "n_boot": c.n_boot,
         "group_duplicates": c.group_duplicates, "cell_scores": "float64 prior-corrected logit"}
    if c.split != "random":
        d["split"] = c.split
    if c.split_file is not None:
        d["split_file"] = {"path": str(c.split_file), "sha256": sha256_file(c.split_file)}
    if c.primary is not None:
        d["primary"] = c.primary
    if c.patch_layers != "s16+s32":
        d["patch_layers"] = c.patch_layers
    if c.resize != "stretch":
        d["resize"] = c.resize
    return d


@pytest.mark.parametrize("over", [
    {}, {"resize": "keep-aspect"}, {"patch_layers": "s8+s16"}, {"split": "official"}, {"primary": "patch"},
    {"tiles": 3, "features": "tiles", "image_size": 448}, {"train_positive_rate": 0.0, "seeds": 3, "folds": 4},
    {"skip_bad": True, "cache_dir": "/elsewhere", "jobs": 2, "progress": False},  # results do not depend on these
    {"split_file": "SPLIT"},
])
def test_the_comparison_fingerprint_is_what_folders_made_before_it_hold(over, tmp_path):
    """Folders (and their cells) made before the spec keep matching: same keys, same values."""
    from imbvision.workflows.compare import _fingerprint

    if over.get("split_file") == "SPLIT":
        (tmp_path / "s.csv").write_text("path,split\na.png,test\n")
        over = {"split_file": str(tmp_path / "s.csv")}
    c = CompareConfig.make("demo:60", **{"image_size": 224, "resize": "stretch", **over})
    assert _fingerprint(c, ["ce", "patch"]) == _fingerprint_as_before(c, ["ce", "patch"])


def test_a_new_field_is_a_new_option_with_no_other_change():
    """Adding a pipeline option is one field: the command's option is generated from it and reaches the config."""
    from imbvision._cli_spec import spec_options
    from imbvision.spec._declared import _field

    class Extended(RunSpec):
        halo_px: int = _field(3, "Halo around each object in px", valid="use an integer in 0..64", ge=0, le=64,
                              flag=("--halo-px",))

    got = {}
    demo = typer.Typer()

    @demo.command()
    @spec_options(Extended, skip=("data",))
    def run(out: str = typer.Option(..., "--out"), **settings):
        got.update(Extended(**settings).to_dict(), out=out)

    r = CliRunner().invoke(demo, ["--out", "o", "--halo-px", "5", "--tiles", "2"])
    assert r.exit_code == 0, r.output
    assert got["halo_px"] == 5 and got["tiles"] == 2 and got["out"] == "o" and got["patch_layers"] == "s16+s32"
    halo = [p for p in typer.main.get_command(demo).params if p.name == "halo_px"][0]
    assert halo.help == "Halo around each object in px" and halo.default == 3 and "--halo-px" in halo.opts
    with pytest.raises(ConfigError, match="--halo-px 65 invalid; use an integer in 0..64"):
        Extended(halo_px=65)


def test_the_cli_refuses_a_bad_value_with_the_fields_message_and_exit_2(tmp_path):
    r = CliRunner().invoke(app, ["train", "--data", "demo:40", "--out", str(tmp_path / "r"), "--tiles", "7"])
    assert r.exit_code == 2 and "--tiles 7 invalid; use 0 (whole image only) or 2..6" in r.output
    r = CliRunner().invoke(app, ["compare", "--data", "demo:40", "--out", str(tmp_path / "c"), "--patch-layers", "s4"])
    assert r.exit_code == 2 and "--patch-layers 's4' invalid; valid: s16+s32, s8+s16" in r.output
    assert not (tmp_path / "c" / "cells").exists()


def test_unknown_python_api_options_are_refused():
    from imbvision.workflows.compare import run_compare

    with pytest.raises(ConfigError, match=r"unknown compare options \['colour'\]"):
        run_compare("demo:40", colour="red")
    with pytest.raises(ConfigError, match="unknown setting 'colour'"):
        TrainConfig(colour="red")


def test_run_config_json_is_the_spec_serialised(tmp_path):
    """A run folder's config.json and its bundle's config are TrainConfig.to_dict of the run's config."""
    from imbvision.workflows.train import train

    res = train(None, tmp_path / "run", data="demo:60:0.3:0:64", strategy="ce", image_size=64, n_boot=0,
                progress=False, cache_dir=str(tmp_path / "cache"))
    on_disk = json.loads((Path(res.out) / "config.json").read_text())
    bundle = json.loads((Path(res.out) / "model.json").read_text())
    cfg = TrainConfig.from_dict(on_disk)
    assert cfg.to_dict() == bundle["config"] == TrainConfig.from_dict(bundle["config"]).to_dict()
    assert cfg.image_size == 64 and cfg.resize in ("stretch", "keep-aspect")  # resolved, recorded
    b = bundle["backbone"]
    assert {k: b[k] for k in ("weights", "image_size", "tiles", "features", "resize")} == \
        {k: v for k, v in cfg.backbone_record("global").items() if k != "resolution"}


def test_the_settings_reference_page_is_generated_from_the_fields():
    from imbvision.spec.reference import settings_page

    page = (Path(__file__).resolve().parent.parent / "docs" / "settings.md").read_text(encoding="utf-8")
    assert page == settings_page(), "docs/settings.md is stale: run `python -m imbvision.spec.reference`"
    for name in cli_fields(TrainConfig, skip=("data",)) + cli_fields(CompareConfig, skip=("data",)):
        assert f"`{flag_of(TrainConfig if name in TrainConfig.model_fields else CompareConfig, name)}" in page, name


def test_every_command_taking_a_pipeline_setting_takes_the_fields_definition():
    """--positive, --backbone, --tiles, --cache-dir … of audit, embed, predict and derive-masks are the fields too."""
    group = typer.main.get_command(app)
    shared = ("positive", "backbone", "weights", "tiles", "seed", "cache_dir", "skip_bad")
    seen = {}
    for cname, cmd in group.commands.items():
        for p in cmd.params:
            own = (cname, p.name) in (("predict", "weights"), ("demo", "seed"))  # moved weights; the demo set's seed
            if p.name in shared and not own:
                f = TrainConfig.model_fields[p.name]
                assert (p.help, p.default) == (f.description, f.default), (cname, p.name)
                seen.setdefault(p.name, set()).add(cname)
    assert seen["positive"] >= {"train", "compare", "audit", "embed", "predict", "derive-masks"}
    assert seen["tiles"] >= {"train", "compare", "audit", "embed"}
    data = {p.help for cmd in group.commands.values() for p in cmd.params if p.name == "data"}
    assert all(RunSpec.model_fields["data"].description in h for h in data)


def test_the_fine_tune_choices_are_valid_lightning_fabric_values():
    import typing

    from lightning_fabric.accelerators import ACCELERATOR_REGISTRY
    from lightning_fabric.connector import _PRECISION_INPUT_STR
    from lightning_fabric.strategies import STRATEGY_REGISTRY

    from imbvision._choices import ACCELERATORS, DIST_STRATEGIES, PRECISIONS

    assert set(ACCELERATORS) - {"auto", "gpu"} <= set(ACCELERATOR_REGISTRY.available_accelerators())
    assert set(PRECISIONS) <= set(typing.get_args(_PRECISION_INPUT_STR))
    assert set(DIST_STRATEGIES) - {"auto"} <= set(STRATEGY_REGISTRY.available_strategies())
    for field, bad in (("accelerator", "tpu"), ("precision", "8-bit"), ("dist_strategy", "bogus")):
        with pytest.raises(ConfigError, match=f"{flag_of(TrainConfig, field)} '{bad}' invalid; valid: "):
            TrainConfig(**{field: bad})


@pytest.mark.parametrize("args,message", [
    (["--tiles", "2.5"], "--tiles '2.5' invalid; use 0 (whole image only) or 2..6"),
    (["--tiles", "true"], "--tiles 'true' invalid"),
    (["--val", "true"], "--val 'true' invalid; use a fraction in (0, 1)"),
    (["--max-synthetic", "1e3"], "--max-synthetic '1e3' invalid; use an integer in 0..100000"),
    (["--image-size", ""], "--image-size '' invalid"),
    (["--accelerator", "tpu"], "--accelerator 'tpu' invalid; valid: auto, cpu, cuda, gpu, mps"),
])
def test_a_value_of_the_wrong_type_is_the_same_one_line_as_any_bad_value(tmp_path, args, message):
    r = CliRunner().invoke(app, ["train", "--data", "demo:40", "--out", str(tmp_path / "r"), *args])
    assert r.exit_code == 2 and message in r.output and "Usage:" not in r.output, r.output
    assert not (tmp_path / "r").exists()


def test_python_api_refuses_a_float_for_an_integer_and_names_python_only_settings_by_name():
    with pytest.raises(ConfigError, match=r"--tiles 2.0 invalid"):
        TrainConfig(tiles=2.0)
    with pytest.raises(ConfigError, match=r"^n_boot 10.0 invalid; use an integer"):
        TrainConfig(n_boot=10.0)
    assert TrainConfig(lr=1).lr == 1.0  # an integer for a float is fine
