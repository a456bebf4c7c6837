"""The typed params contract: the repo's params.yaml and presets validate, and every bad key or value
stops a stage with one line naming the file, the line and the dotted key, before any work."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest

from daj.config import ParamsConfig, to_dict
from daj.errors import DajError
from daj.params import key_line, load_yaml, validate_params
from daj.paths import REPO
from daj.presets import apply_to_params, load_preset

PARAMS_TEXT = (REPO / "params.yaml").read_text(encoding="utf-8")
PARAMS = load_yaml(PARAMS_TEXT)


def test_repo_params_validate_and_defaults_live_in_the_models():
    config = validate_params(copy.deepcopy(PARAMS), "params.yaml", PARAMS_TEXT)
    filled = to_dict(config)
    # every key of params.yaml is a model field, and the models' defaults equal the file's values,
    # so leaving a key out of params.yaml changes nothing
    defaults = to_dict(ParamsConfig())
    for section, value in PARAMS.items():
        assert filled[section] == value or isinstance(value, dict), section
        if section != "policies":
            assert defaults[section] == filled[section], f"default of {section} differs from params.yaml"


@pytest.mark.parametrize("preset", sorted(p.name for p in (REPO / "presets").glob("*.yaml")))
def test_presets_validate(preset):
    values = load_preset(REPO / "presets" / preset)
    validate_params(apply_to_params(values, copy.deepcopy(PARAMS)), f"presets/{preset}")


def _set(raw: dict, dotted: str, value) -> dict:
    out = copy.deepcopy(raw)
    node = out
    *parents, last = dotted.split(".")
    for part in parents:
        node = node[part]
    node[last] = value
    return out


@pytest.mark.parametrize(("dotted", "value", "words"), [
    ("reweight", "instnce_table", "instance_table"),
    ("train.objective", "foo", "'dpo'"),
    ("bon.rounds", -1, "greater than 0"),
    ("bon.rounds", 1.5, "integer"),
    ("train.stepz", 3, "unknown key"),
    ("execute.seccomp", "yes", "boolean"),
    ("reward.correct", -3.0, "correct > wrong"),
    ("train.lr", "1e-06", "valid number"),
    ("train.lr", float("inf"), "finite"),
    ("split.lcb_test_start", "2025-13-01", "month"),
    ("pairs.max_problems", {"lower": 3, "uper": 2}, "unknown key"),
    ("bon.policies", ["nope"], "unknown policy 'nope'"),
    ("benchmark", "mbpp", "'humaneval'"),
])
def test_bad_values_name_the_key_and_line(dotted, value, words):
    with pytest.raises(DajError) as info:
        validate_params(_set(PARAMS, dotted, value), "params.yaml", PARAMS_TEXT)
    err = info.value
    assert err.path == "params.yaml" and words in str(err)
    # the dotted key itself, a key inside it (an unknown sub-key), or (for a rule between fields) the
    # mapping that holds the culprit
    assert (err.field == dotted or err.field.startswith(dotted + ".") or dotted.startswith(err.field + ".")
            or dotted.startswith(err.field + "["))
    assert err.line is not None and "\n" not in str(err)


def test_policy_options_are_checked_per_backend():
    from daj.preflight import check_policies

    raw = copy.deepcopy(PARAMS)
    raw["policies"].append({"name": "gen", "backend": "hf", "model": "m", "tempreature": 0.3})
    config = validate_params(raw)  # engine options are the backend's: checked before any stage runs
    with pytest.raises(DajError, match="tempreature") as info:
        check_policies(config, "params.yaml")
    assert info.value.field == "policies[1].tempreature"
    raw["policies"][-1] = {"name": "pool", "backend": "file"}
    with pytest.raises(DajError, match="needs 'path'") as info:
        validate_params(raw)
    assert info.value.field == "policies[1]"
    raw["policies"][-1] = {"name": "pool", "backend": "mutants", "model": "m"}
    with pytest.raises(DajError, match="unknown option"):
        validate_params(raw)


@pytest.mark.parametrize(("text", "value"), [("1e-06", 1e-06), ("1E5", 1e5), (".5", 0.5), ("1.0e-4", 1e-4),
                                             ("-2.5E-3", -2.5e-3)])
def test_numbers_as_dvc_and_yaml_1_2_write_them(text, value):
    """DVC writes `-S train.lr=1e-6` as `lr: 1e-06`, a float in YAML 1.2 and a string to PyYAML."""
    raw = load_yaml(PARAMS_TEXT.replace("  lr: 1.0e-4", f"  lr: {text}"))
    assert raw["train"]["lr"] == value and isinstance(raw["train"]["lr"], float)
    if value > 0:
        assert validate_params(raw).train.lr == value
    quoted = load_yaml(PARAMS_TEXT.replace("  lr: 1.0e-4", f'  lr: "{text}"'))
    with pytest.raises(DajError, match="train.lr"):
        validate_params(quoted)


def test_key_line_finds_nested_and_listed_keys():
    text = "a: 1\nb:\n  c:\n    d: 2\nl:\n  - name: x\n  - name: y\n"
    assert key_line(text, "b.c.d") == 4 and key_line(text, "l[1].name") == 7 and key_line(text, "zz") is None


@pytest.mark.parametrize("stage", ["train", "fetch", "bon"])
def test_a_stage_stops_before_any_work_on_a_bad_key(tmp_path, stage):
    (tmp_path / "params.yaml").write_text(PARAMS_TEXT.replace("  steps: ", "  stepz: "), encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", f"stages.{stage}"], cwd=tmp_path, capture_output=True, text=True,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "params.yaml:" in lines[0] and "'train.stepz'" in lines[0], proc.stderr
    assert sorted(p.name for p in Path(tmp_path).iterdir()) == ["params.yaml"]  # nothing written
