"""The typed params contract: the repo's params.yaml and presets validate, and every bad key or value
stops a stage with one line naming the file, the line and the dotted key, before any work."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from daj.config import ParamsConfig, key_line, to_dict, validate_params
from daj.errors import DajError
from daj.paths import REPO
from daj.presets import apply_to_params, load_preset

PARAMS_TEXT = (REPO / "params.yaml").read_text(encoding="utf-8")
PARAMS = yaml.safe_load(PARAMS_TEXT)


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
    ("judge.reward.correct", -3.0, "correct > wrong"),
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
    raw = copy.deepcopy(PARAMS)
    raw["policies"].append({"name": "gen", "backend": "hf", "model": "m", "tempreature": 0.3})
    with pytest.raises(DajError, match="tempreature"):
        validate_params(raw)
    raw["policies"][-1] = {"name": "pool", "backend": "file"}
    with pytest.raises(DajError, match="needs 'path'") as info:
        validate_params(raw)
    assert info.value.field == "policies[1]"


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


def test_library_defaults_agree_with_the_params_models():
    """Settings objects built in code (tests, benchmarks, notebooks) default to what params.yaml means;
    the one deliberate difference: code opts in to the reference store (no .cache writes by surprise)."""
    from dataclasses import fields

    from daj.config import ExecuteConfig, JudgeConfig, TrainConfig
    from daj.judge.runner import JudgeSettings
    from daj.train.bilevel import TrainConfig as LoopConfig
    from daj.train.run import RunOptions
    from sandbox.config import SandboxConfig

    differ = []
    for lib, model in ((SandboxConfig, ExecuteConfig), (LoopConfig, TrainConfig), (RunOptions, TrainConfig),
                       (JudgeSettings, JudgeConfig)):
        built, typed = lib(), model()
        differ += [f"{lib.__name__}.{f.name}" for f in fields(lib)
                   if f.name in model.model_fields and getattr(built, f.name) != getattr(typed, f.name)]
    assert differ == ["RunOptions.ref_cache_dir"]
