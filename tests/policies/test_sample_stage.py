"""The sample stage: mutants, file pools, hf policies, and resuming after a SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from daj.config import ParamsConfig
from daj.data.humaneval import load_humaneval_package
from daj.errors import DajError
from daj.io import read_jsonl, write_jsonl
from daj.params import load_config, validate_params
from daj.paths import shared_data
from daj.testing.openai_server import Handler, make_server
from stages import sample

REPO = Path(__file__).resolve().parents[2]
SUBMISSIONS = shared_data("lcb", "submissions")
LCB_SNAPSHOT = shared_data("lcb", "code_generation_lite")
HUMANEVAL = load_humaneval_package()


def _setup(tmp_path: Path, policies: list[dict], problems: list[dict], **extra) -> ParamsConfig:
    raw = {"seed": 0, "sampling": {"n": 4, "temperature": 0.7, "top_p": 0.8, "top_k": 20,
                                   "repetition_penalty": 1.05, "max_new_tokens": 8192},
           "policies": policies, "split": {"exclude_platforms": ["codeforces"]}, **extra}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    write_jsonl(tmp_path / "data" / "problems.jsonl", problems)
    return validate_params(raw, str(tmp_path / "params.yaml"))


def test_mutants_policy(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = _setup(tmp_path, [{"name": "mutants", "backend": "mutants", "n": 8}], HUMANEVAL[:12])
    sample.main(params)
    rows = read_jsonl("data/candidates/mutants.jsonl", required=("problem_id", "policy", "index", "code",
                                                                  "mutation"))
    by = {}
    for r in rows:
        by.setdefault(r["problem_id"], []).append(r)
    assert list(by) == [p["id"] for p in HUMANEVAL[:12]]
    for cands in by.values():
        assert [c["index"] for c in cands] == list(range(len(cands))) and len(cands) <= 8
        assert sum(c["mutation"] is None for c in cands) == 1
    metrics = json.loads(Path("metrics/sample/mutants.json").read_text())
    assert metrics["candidates"] == len(rows) and metrics["problems"] == 12
    first = Path("data/candidates/mutants.jsonl").read_bytes()
    sample.main(params)  # complete: reused, same bytes
    assert json.loads(Path("logs/sample.json").read_text())["mutants"]["reused"] is True
    assert "seconds" not in json.loads(Path("metrics/sample/mutants.json").read_text())  # timings: logs/ only
    assert Path("data/candidates/mutants.jsonl").read_bytes() == first


def _lcb_problem(qid: str, platform: str) -> dict:
    return {"id": f"lcb/{qid}", "benchmark": "lcb", "title": qid, "prompt": "p", "starter_code": "",
            "platform": platform, "difficulty": "easy", "release_date": "2024-01-01",
            "tests": {"type": "stdin", "public": [], "private": []}}


def test_file_policy_combines_pools_and_reports_missing(tmp_path, monkeypatch):
    import gzip
    monkeypatch.chdir(tmp_path)
    for name, codes in (("a", {"1": ["a1"], "2": ["a2"], "9": ["a9"]}), ("b", {"1": ["b1", "b1bis"]})):
        with gzip.open(tmp_path / f"{name}_eval_all.json.gz", "wt") as fh:
            json.dump([{"question_id": q, "code_list": c, "graded_list": [True] * len(c)} for q, c in codes.items()],
                      fh)
    problems = [_lcb_problem("1", "atcoder"), _lcb_problem("2", "leetcode"), _lcb_problem("3", "atcoder"),
                _lcb_problem("9", "codeforces")]
    params = _setup(tmp_path, [{"name": "mix", "backend": "file",
                                "path": ["a_eval_all.json.gz", "b_eval_all.json.gz"]}], problems)
    sample.main(params)
    rows = read_jsonl("data/candidates/mix.jsonl")
    assert [(r["problem_id"], r["index"], r["code"]) for r in rows] == [
        ("lcb/1", 0, "a1"), ("lcb/1", 1, "b1"), ("lcb/1", 2, "b1bis"), ("lcb/2", 0, "a2")]
    assert all(r["imported_passed"] is True and r["policy"] == "mix" for r in rows)
    m = json.loads(Path("metrics/sample/mix.json").read_text())
    assert m["missing"] == 1 and m["missing_ids"] == ["lcb/3"] and m["problems"] == 3  # codeforces excluded


@pytest.mark.skipif(not (SUBMISSIONS.is_dir() and LCB_SNAPSHOT.is_dir()), reason="real LCB data in shared/ (DAJ_SHARED)")
def test_real_lcb_pools_through_the_stage(tmp_path, monkeypatch):
    from daj.data.lcb import load_lcb_snapshot

    monkeypatch.chdir(tmp_path)
    names = ["submissions_v5_O1-Mini-2024-09-12_N1_eval_all.json.gz",
             "submissions_v5_O1-Preview-2024-09-12_N1_eval_all.json.gz",
             "submissions_v5_Kimi-k1.6-IOI-high_N1_eval_all.json.gz"]
    params = _setup(tmp_path, [{"name": "o1mini", "backend": "file", "path": str(SUBMISSIONS / names[0])},
                               {"name": "three", "backend": "file", "path": [str(SUBMISSIONS / n) for n in names]}],
                    load_lcb_snapshot(LCB_SNAPSHOT), split={"exclude_platforms": []})
    sample.main(params)
    m = {name: json.loads(Path(f"metrics/sample/{name}.json").read_text()) for name in ("o1mini", "three")}
    assert (m["o1mini"]["candidates"], m["o1mini"]["imported_passed"], m["o1mini"]["missing"]) == (880, 602, 0)
    assert m["three"]["candidates"] == 2640 and m["three"]["imported_passed"] == 602 + 489 + 757
    assert m["three"]["candidates_per_problem"] == {"3": 880}


def test_hf_policy_writes_prompts_responses_and_tokens(tmp_path, monkeypatch):
    from _tiny_model import tiny_model_dir

    monkeypatch.chdir(tmp_path)
    params = _setup(tmp_path, [{"name": "tiny", "backend": "hf", "model": tiny_model_dir(), "device": "cpu",
                                "n": 2, "max_new_tokens": 4, "chunk": 2, "batch_size": 2}], HUMANEVAL[:3])
    sample.main(params)
    rows = read_jsonl("data/candidates/tiny.jsonl")
    assert len(rows) == 6 and [r["index"] for r in rows] == [0, 1] * 3
    for r in rows:
        assert r["prompt"][-1]["role"] == "user" and "```python" in r["prompt"][-1]["content"]
        assert isinstance(r["response"], str) and 1 <= r["completion_tokens"] <= 4
        assert isinstance(r["code"], str)
    m = json.loads(Path("metrics/sample/tiny.json").read_text())
    assert m["completion_tokens"] == sum(r["completion_tokens"] for r in rows)
    assert json.loads(Path("logs/sample.json").read_text())["tiny"]["tokens_per_s"] > 0
    assert m["sampling"]["n"] == 2 and m["sampling"]["top_k"] == 20


def test_bad_policies(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for policies, field in (([{"name": "x", "backend": "nope"}], "policies[0].backend"),
                            ([{"name": "x", "backend": "file"}], "policies[0]"),
                            ([{"name": "a/b", "backend": "mutants"}], "policies[0].name"),
                            ([{"name": "x", "backend": "mutants", "n": 0}], "policies[0].n")):
        with pytest.raises(DajError) as e:
            _setup(tmp_path, policies, HUMANEVAL[:1])
        assert e.value.field == field and "params.yaml" in str(e.value)
    params = _setup(tmp_path, [{"name": "m", "backend": "mutants"}], [_lcb_problem("1", "atcoder")])
    with pytest.raises(DajError, match="no reference"):
        sample.main(params)


class _Slow(Handler):
    """Our server, slowed down."""

    def do_POST(self):  # noqa: N802
        time.sleep(0.2)
        super().do_POST()


def test_killed_run_resumes_to_the_same_output(tmp_path, monkeypatch):
    from _tiny_model import tiny_engine

    engine = tiny_engine()
    seen: list[str] = []
    real_generate = engine.generate

    srv = make_server(engine, "tiny", port=0)
    srv.RequestHandlerClass = _Slow
    srv.engine = type("Recording", (), {"generate": lambda self, prompts, params, prefixes=None: (
        seen.append(prompts[0][-1]["content"]), real_generate(prompts, params, prefixes))[1]})()
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        policy = {"name": "api", "backend": "openai", "model": "tiny", "base_url": srv.url, "api_key_env": None,
                  "chunk": 1, "n": 2, "max_new_tokens": 3, "concurrency": 1}
        problems = HUMANEVAL[:8]
        run_dir, ref_dir = tmp_path / "killed", tmp_path / "clean"
        for d in (run_dir, ref_dir):
            d.mkdir()
            _setup(d, [policy], problems)
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        proc = subprocess.Popen([sys.executable, "-m", "stages.sample"], cwd=run_dir, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        partial = run_dir / ".cache" / "sample" / "api.partial.jsonl"
        deadline = time.time() + 60
        while time.time() < deadline:
            if partial.exists() and partial.read_text().count('"_chunk_done"') >= 3:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the run finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert not (run_dir / "data" / "candidates" / "api.jsonl").exists()  # no partial output
        done = partial.read_text().count('"_chunk_done"')
        assert 3 <= done < len(problems)
        time.sleep(0.6)  # let the server finish the request in flight at the kill
        first_run = list(seen)
        subprocess.run([sys.executable, "-m", "stages.sample"], cwd=run_dir, env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        second_run = seen[len(first_run):]
        prompts = [p["prompt"] for p in problems]
        done_prompts = prompts[:done]
        assert not any(any(dp.rstrip() in s for dp in done_prompts) for s in second_run)  # nothing redone
        assert len(second_run) == len(problems) - done
        run = json.loads((run_dir / "logs" / "sample.json").read_text())["api"]
        assert run["resumed_problems"] == done and not partial.exists()

        monkeypatch.chdir(ref_dir)
        sample.main(load_config(ref_dir / "params.yaml"))
        resumed = (run_dir / "data" / "candidates" / "api.jsonl").read_bytes()
        assert resumed == (ref_dir / "data" / "candidates" / "api.jsonl").read_bytes()
        assert len(read_jsonl(ref_dir / "data" / "candidates" / "api.jsonl")) == 16
    finally:
        srv.shutdown()
        srv.server_close()
