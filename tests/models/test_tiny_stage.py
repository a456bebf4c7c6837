"""stages.tiny: same seed -> identical weights and tokenizer; another seed -> other weights."""

from __future__ import annotations

import hashlib
from pathlib import Path

from daj.config import ParamsConfig
from stages import tiny


def _digest(folder: Path, name: str) -> str:
    return hashlib.sha256((folder / name).read_bytes()).hexdigest()


def test_tiny_stage_is_deterministic(tiny_model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tiny.main(ParamsConfig(seed=0))
    built = tmp_path / "models" / "tiny"
    ref = Path(tiny_model)  # built by the test helper with seed 0 in another directory
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert _digest(built, name) == _digest(ref, name), name
    assert not [p for p in (tmp_path / "models").iterdir() if p.name.startswith(".")]  # no temp dirs left
    other = tiny.build(tmp_path / "other", seed=1)
    assert _digest(other, "model.safetensors") != _digest(ref, "model.safetensors")
    assert _digest(other, "tokenizer.json") == _digest(ref, "tokenizer.json")
