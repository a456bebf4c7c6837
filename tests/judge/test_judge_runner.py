"""Judge prompt, caching and forced selection with an in-test fake engine (real hf engine: test_judge_hf)."""

from __future__ import annotations

import math

import pytest

from daj.config import JudgeConfig
from daj.engines.base import Completion, SamplingParams
from daj.errors import DajError
from daj.judge.cache import JudgeCache
from daj.judge.parse import parse_selection
from daj.judge.prompt import build_messages, share_budget, truncate_middle
from daj.judge.runner import JudgeRequest, JudgeRunner, force_prefix, sampling_of
from daj.params import validate_params

PROBLEM = {
    "id": "lcb/abc301_a", "title": "Overall Winner", "platform": "atcoder", "difficulty": "easy",
    "statement": "Takahashi and Aoki played N games. Print the overall winner.\n" * 3,
    "starter_code": "",
    "tests": {"type": "stdin", "public": [{"input": "5\nTTAAT\n", "output": "T\n"}]},
}
GOOD = "n = int(input())\ns = input()\nprint('T' if s.count('T') > s.count('A') else 'A')\n"
BAD = "print('T')\n"


class FakeJudgeEngine:
    """Answers each prompt with a canned reply chosen by `reply(messages, k)`; counts model calls."""

    name = "fake-judge"

    def __init__(self, reply, scores=None):
        self.reply, self.scores = reply, scores
        self.generated: list[int] = []  # prompts per generate() call
        self.scored = 0

    def generate(self, prompts, params: SamplingParams, prefixes=None):
        self.generated.append(len(prompts))
        return [[Completion(self.reply(p, k), "stop", 100, 10) for k in range(params.n)] for p in prompts]

    def score_continuations(self, prompt, prefix, options):
        self.scored += 1
        assert prefix.endswith("<selection>")
        return list(self.scores) if self.scores else [-float(i) for i in range(len(options))]

    def close(self):
        pass


def test_prompt_has_protocol_fields_and_answer_format():
    msgs = build_messages(PROBLEM, [GOOD, BAD], 6000)
    text = msgs[-1]["content"]
    for piece in ("Overall Winner", "atcoder", "easy", "TTAAT", "## Candidate 1", "## Candidate 2", GOOD.strip(),
                  "Hidden tests", "off-by-one", "Edge cases", "Input and output format", "complexity",
                  "(1 to 2)"):
        assert piece in text, piece
    assert text.rstrip().endswith("<selection>INDEX</selection>")
    assert text.index(GOOD.strip()) < text.index(BAD.strip())
    three = build_messages(PROBLEM, [GOOD, BAD, GOOD], 6000)[-1]["content"]
    assert "## Candidate 3" in three and "(1 to 3)" in three


def test_truncation_keeps_head_and_tail_and_is_fair():
    text = "".join(f"line {i}\n" for i in range(1000))
    cut = truncate_middle(text, 300)
    assert len(cut) <= 300 and cut.startswith("line 0\n") and cut.endswith("line 999\n")
    assert "characters omitted" in cut
    assert truncate_middle("short", 300) == "short"
    assert share_budget([10, 5000, 5000], 1000) == [10, 495, 495]
    long_code = "x = 1\n" * 2000
    msgs = build_messages({**PROBLEM, "statement": "S" * 20000}, [long_code, BAD], 3000)
    body = msgs[-1]["content"]
    assert body.count("characters omitted") == 2  # the statement and the long candidate; BAD stays whole
    assert BAD.strip() in body
    assert len(body) < 3000 + 2500  # budget plus the fixed template text


def test_same_prompt_twice_is_one_model_call(tmp_path):
    engine = FakeJudgeEngine(lambda p, k: "Candidate 1 handles the counts. <selection>1</selection>")
    settings = JudgeConfig(max_new_tokens=32, force_selection=False, force_sampling=False)
    req = JudgeRequest(build_messages(PROBLEM, [GOOD, BAD], 6000), 2)
    runner = JudgeRunner(engine, settings, JudgeCache(tmp_path / "cache"))
    out, stats = runner.respond([req, req])
    assert engine.generated == [1] and stats.model_calls == 1 and stats.responses == 2
    assert [r[0].selection for r in out] == [1, 1]
    out2, stats2 = runner.respond([req])
    assert engine.generated == [1] and stats2.model_calls == 0 and stats2.cache_hits == 1
    # the cache persists across runners (a repeated stage run costs nothing) ...
    again = JudgeRunner(engine, settings, JudgeCache(tmp_path / "cache"))
    again.respond([req])
    assert engine.generated == [1]
    # ... and is keyed by the settings and the seed
    JudgeRunner(engine, JudgeConfig(max_new_tokens=33, force_selection=False, force_sampling=False), JudgeCache(tmp_path / "cache")).respond([req])
    again.respond([JudgeRequest(req.messages, 2, seed=1)])
    assert engine.generated == [1, 1, 1]


def test_forced_selection_appends_the_likeliest_index():
    engine = FakeJudgeEngine(lambda p, k: "Both look similar but candidate", scores=[-3.0, -0.5])
    runner = JudgeRunner(engine, JudgeConfig(force_selection=True, force_sampling=False))
    [[resp]], stats = runner.respond([JudgeRequest(build_messages(PROBLEM, [GOOD, BAD], 6000), 2)])
    assert resp.forced and resp.raw_selection is None and resp.selection == 2
    assert resp.text.endswith("<selection>2</selection>") and resp.text.startswith(resp.raw_text)
    assert stats.forced == 1 and engine.scored == 1
    # a valid answer is kept as it is
    engine = FakeJudgeEngine(lambda p, k: "<selection>1</selection>", scores=[-3.0, -0.5])
    [[resp]], _ = JudgeRunner(engine, JudgeConfig(force_selection=True, force_sampling=False)).respond(
        [JudgeRequest(build_messages(PROBLEM, [GOOD, BAD], 6000), 2)])
    assert not resp.forced and resp.selection == 1 and engine.scored == 0


def test_force_prefix_closes_code_fences():
    for raw in ("", "reasoning", "see ```python\nx = 1\n", "I pick <selection>"):
        text = force_prefix(raw) + "2</selection>"
        assert parse_selection(text, 2) == 2, raw


def test_forced_selection_needs_a_scoring_engine():
    class NoScore:
        name = "plain"

        def generate(self, prompts, params, prefixes=None):
            return []

        def close(self):
            pass

    with pytest.raises(DajError, match="force_selection"):
        JudgeRunner(NoScore(), JudgeConfig(force_selection=True, force_sampling=False))


def test_fingerprint_follows_content(tmp_path):
    from daj.hashing import checkpoint_digest as fingerprint
    from daj.judge.runner import judge_name

    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"a" * 5000)
    first = fingerprint(str(tmp_path / "m"))
    assert first == fingerprint(str(tmp_path / "m"), chunk=1000, whole_below=10**6)
    (tmp_path / "m" / "model.safetensors").write_bytes(b"b" + b"a" * 4999)
    assert fingerprint(str(tmp_path / "m")) != first
    # big files are sampled at both ends
    assert fingerprint(str(tmp_path / "m"), chunk=100, whole_below=1000) != first
    assert fingerprint("Qwen/Qwen3-1.7B") is None and fingerprint(None) is None
    assert judge_name("Qwen/Qwen3-1.7B", None) == "Qwen/Qwen3-1.7B"
    assert judge_name(str(tmp_path / "m"), str(tmp_path / "m")).count("@") == 2


def test_forced_sampling_follows_the_option_probabilities():
    import math

    engine = FakeJudgeEngine(lambda p, k: "no tag", scores=[math.log(0.2), math.log(0.8)])
    chats = [build_messages({**PROBLEM, "title": f"T{i}"}, [GOOD, BAD], 6000) for i in range(400)]
    argmax = JudgeRunner(engine, JudgeConfig(force_selection=True, temperature=1.0, force_sampling=False))
    assert {r[0].selection for r in argmax.respond([JudgeRequest(c, 2) for c in chats])[0]} == {2}
    sampled = JudgeRunner(engine, JudgeConfig(force_selection=True, force_sampling=True, temperature=1.0))
    picks = [r[0].selection for r in sampled.respond([JudgeRequest(c, 2) for c in chats])[0]]
    share = picks.count(2) / len(picks)
    assert abs(share - 0.8) < 4 * (0.8 * 0.2 / 400) ** 0.5  # within 4 standard errors
    again = JudgeRunner(engine, JudgeConfig(force_selection=True, force_sampling=True, temperature=1.0))
    assert [r[0].selection for r in again.respond([JudgeRequest(c, 2) for c in chats])[0]] == picks  # seeded
    greedy = JudgeRunner(engine, JudgeConfig(force_selection=True, force_sampling=True, temperature=0.0))
    assert {r[0].selection for r in greedy.respond([JudgeRequest(c, 2) for c in chats[:20]])[0]} == {2}


def test_selection_only_scores_each_prompt_once_and_generates_nothing(tmp_path):
    engine = FakeJudgeEngine(lambda p, k: pytest.fail("selection only must not generate"), scores=[-0.7, -0.7])
    settings = JudgeConfig(mode="select", force_sampling=True, temperature=1.0, force_selection=False)
    runner = JudgeRunner(engine, settings, JudgeCache(tmp_path / "cache"))
    reqs = [JudgeRequest(build_messages(PROBLEM, [GOOD, BAD], 6000), 2, n=8, seed=s) for s in range(3)]
    out, stats = runner.respond(reqs)
    assert engine.generated == [] and engine.scored == 3  # one scoring per prompt, whatever n
    picks = [r.selection for responses in out for r in responses]
    assert all(r.text == f"<selection>{r.selection}</selection>" and r.forced and r.raw_text == ""
               for responses in out for r in responses)
    assert set(picks) == {1, 2}  # equal scores: the 24 draws are not all the same position
    assert stats.model_calls == 3 and stats.completion_tokens == 0
    assert all(r.option_logprobs == pytest.approx([math.log(0.5)] * 2) for responses in out for r in responses)


def test_modes_need_a_scoring_engine_only_when_they_score_options():
    class NoScore:
        name = "plain"

        def generate(self, prompts, params, prefixes=None):
            return []

        def close(self):
            pass

    with pytest.raises(DajError, match="mode select needs an engine that scores") as err:
        JudgeRunner(NoScore(), JudgeConfig(mode="select", force_selection=False, force_sampling=False))
    assert err.value.field == "mode"  # the runner's setting; build_runner names it judge.mode
    with pytest.raises(DajError, match="force_selection needs an engine that scores"):
        JudgeRunner(NoScore(), JudgeConfig(mode="reason", force_selection=True, force_sampling=False))
    JudgeRunner(NoScore(), JudgeConfig(mode="reason", force_selection=False, force_sampling=False))  # writes its own tags


BASE = {"temperature": 0.7, "top_p": 0.8, "top_k": 20, "repetition_penalty": 1.0, "max_prompt_chars": 2000,
        "max_new_tokens": 16, "force_selection": True}


def _settings(**judge):
    return validate_params({"judge": {**BASE, **judge}}, "params.yaml").judge


def test_mode_params_are_checked():
    assert _settings().mode == "reason" and not _settings().selection_only  # absent: reason
    assert _settings(mode="select").selection_only
    for judge, field, message in (
            ({"mode": "selct"}, "judge.mode", "'reason' or 'select'"),
            ({"mode": None}, "judge.mode", "'reason' or 'select'"),
            ({"max_new_tokens": 0}, "judge.max_new_tokens", "greater than 0"),
            ({"swap": True}, "judge.swap", "unknown key"),
            ({"force_sampling": 1}, "judge.force_sampling", "valid boolean"),
            ({"max_new_token": 5}, "judge.max_new_token", "unknown key")):
        with pytest.raises(DajError, match=message) as err:
            _settings(**judge)
        assert err.value.field == field and str(err.value).startswith(f"params.yaml, field '{field}'"), judge


def test_select_mode_keeps_the_cache_key_of_max_new_tokens_zero():
    """Select mode must key as the selection-only setting it replaced (max_new_tokens 0, forced
    selection), so that cached smol-preset answers stay valid: the answer is stored under that key."""
    from daj.judge.cache import cache_key

    engine = FakeJudgeEngine(lambda p, k: "", scores=[-1.0, -2.0])
    req = JudgeRequest(build_messages(PROBLEM, [GOOD, BAD], 6000), 2, n=3, seed=5)
    settings = JudgeConfig(mode="select", force_sampling=True, max_new_tokens=16, force_selection=False)
    legacy = cache_key(messages=req.messages, model="fake-judge",
                       sampling={**sampling_of(settings, 3, 5).to_dict(), "max_new_tokens": 0}, force=True,
                       force_sampling=True, k=2)
    runner = JudgeRunner(engine, settings, JudgeCache(None))
    runner.respond([req])
    assert runner.cache.get(legacy) is not None and len(runner.cache) == 1
    reason = JudgeConfig(mode="reason", force_selection=True, force_sampling=True, max_new_tokens=16)
    runner = JudgeRunner(FakeJudgeEngine(lambda p, k: "<selection>1</selection>"), reason, JudgeCache(None))
    runner.respond([req])
    assert runner.cache.get(cache_key(messages=req.messages, model="fake-judge",
                                      sampling=sampling_of(reason, 3, 5).to_dict(), force=True,
                                      force_sampling=True, k=2)) is not None


def test_judge_base_url_and_api_key_env_reach_the_engine_spec():
    def spec(**judge):
        return validate_params({"judge": {"backend": "openai", "model": "m", **judge}}).judge.engine_spec(None)

    assert spec(base_url="http://h:1/v1", api_key_env="K") == {
        "backend": "openai", "model": "m", "adapter": None, "base_url": "http://h:1/v1", "api_key_env": "K"}
    assert "base_url" not in spec(base_url=None)
    with pytest.raises(DajError, match="options of the openai backend") as err:
        spec(backend="hf", base_url="http://h:1/v1")
    assert err.value.field == "judge"
    with pytest.raises(DajError, match="do not repeat it"):
        spec(base_url="http://h:1/v1", engine_options={"base_url": "http://other/v1"})
    with pytest.raises(DajError, match="valid string") as err:
        spec(api_key_env=3)
    assert err.value.field == "judge.api_key_env"


def test_cache_names_keep_engines_apart():
    from daj.judge.runner import engine_cache_name, judge_name

    hf = {"backend": "hf", "model": "org/m", "adapter": None, "batch_size": 4, "device": "cpu"}
    assert engine_cache_name(hf) == judge_name("org/m", None) == "org/m"  # hf keeps its old name (cache valid)
    http = {"backend": "openai", "model": "org/m", "adapter": None, "base_url": "http://a:1/v1", "concurrency": 8}
    names = {engine_cache_name(s) for s in (
        hf, http, {**http, "base_url": "http://b:1/v1"}, {**http, "extra_body": {"reasoning_effort": "high"}},
        {**http, "backend": "vllm", "base_url": None}, {**http, "adapter": "a"})}
    assert len(names) == 6
    assert engine_cache_name({**http, "concurrency": 1, "max_retries": 9}) == engine_cache_name(http)


def test_select_mode_scores_a_chunk_in_one_batch_like_one_by_one(tiny_engine):
    """The batched option scoring of a chunk gives the one-prompt path's log-probs (within 1e-5) and,
    at these margins, the same sampled selections."""

    engine = tiny_engine  # batch_size 2: chunks of two prompts per padded forward
    calls = {"batch": 0}
    batch = engine.score_continuations_batch

    def counting(requests, batch_size=None):
        calls["batch"] += 1
        return batch(requests, batch_size)

    codes = [GOOD, BAD, GOOD + "\n# note\n", "print(input()[::-1])\n"]
    reqs = [JudgeRequest(build_messages(PROBLEM, [a, b], 6000), 2, n=4, seed=7)
            for a in codes for b in codes if a != b]
    settings = JudgeConfig(mode="select", force_sampling=True, temperature=1.0, force_selection=False)
    one = JudgeRunner(engine, settings, batch_size=1).respond(reqs)[0]
    engine.score_continuations_batch = counting
    try:
        many = JudgeRunner(engine, settings, batch_size=6).respond(reqs)[0]
    finally:
        del engine.score_continuations_batch
    assert calls["batch"] == 2  # 12 prompts in chunks of 6
    for a, b in zip(one, many, strict=True):
        assert [r.selection for r in a] == [r.selection for r in b]
        for ra, rb in zip(a, b, strict=True):
            assert ra.option_logprobs == pytest.approx(rb.option_logprobs, abs=1e-5)
