"""Pairwise accuracy: the metric arithmetic on a known answer table, the runner plumbing with an engine
double, and the pairwise stage end to end with the tiny hf judge (base and a LoRA-adapted one)."""

from __future__ import annotations

import json

import pytest
import torch
from _judge_data import make_workspace

from daj.config import JudgeConfig
from daj.data.pools import PoolCandidate
from daj.engines.base import Completion
from daj.errors import DajError
from daj.eval.pairwise import Answer, evaluate_judge, pairwise_metrics, runner_select, swap_select
from daj.judge.pairs import pair_prompts
from daj.judge.runner import JudgeRunner
from daj.params import load_config
from stages import pairwise as pairwise_stage


def cand(index: int, passed: bool) -> PoolCandidate:
    return PoolCandidate("p", index, f"print({index})\n", passed, passed)


PROBLEMS = [{"id": "lcb/a", "difficulty": "easy"}, {"id": "lcb/b", "difficulty": "hard"}]
POOLS = {"lcb/a": [cand(0, True), cand(1, False), cand(2, False)],
         "lcb/b": [cand(0, True), cand(1, True), cand(2, False)]}
# group (shown order) -> (selection, raw_selection, forced)
TABLE = {
    "test/lcb/a/p:0|p:1": (1, 1, False), "test/lcb/a/p:1|p:0": (2, 2, False),    # both right
    "test/lcb/a/p:0|p:2": (1, 1, False), "test/lcb/a/p:2|p:0": (1, 1, False),    # position 1 twice
    "test/lcb/b/p:0|p:2": (None, None, False), "test/lcb/b/p:2|p:0": (2, None, True),  # format error; forced
    "test/lcb/b/p:1|p:2": (2, 2, False), "test/lcb/b/p:2|p:1": (1, 1, False),    # the failing one twice
}


def test_metrics_on_a_known_answer_table():
    prompts = pair_prompts("test", PROBLEMS, POOLS, None, seed=0)
    assert sorted(p.group for p in prompts) == sorted(TABLE)
    m = evaluate_judge(prompts, lambda ps: [[Answer(*TABLE[p.group])] for p in ps])
    assert m["n_prompts"] == 8 and m["n_pairs"] == 4 and m["n_problems"] == 2
    assert m["accuracy"] == 4 / 8
    assert m["accuracy_by_difficulty"] == {"easy": 3 / 4, "medium": None, "hard": 1 / 4}
    assert m["accuracy_by_order"] == {"pass_first": 2 / 4, "pass_second": 2 / 4}
    assert m["both_orders_accuracy"] == 1 / 4
    assert m["consistency"] == m["swap_consistency"] == 2 / 4
    assert m["format_error_rate"] == 1 / 8 and m["raw_format_error_rate"] == 2 / 8 and m["forced_rate"] == 1 / 8
    assert m["position1_rate"] == 4 / 7
    assert m["seconds"] >= 0


def test_several_responses_average_the_metrics_of_each_response_index():
    prompts = pair_prompts("test", PROBLEMS, POOLS, None, seed=0)
    right = {p.group: p.correct_position for p in prompts}
    m = evaluate_judge(prompts, lambda ps: [[Answer(*TABLE[p.group]), Answer(right[p.group], right[p.group], False)]
                                            for p in ps])
    assert m["responses_per_prompt"] == 2 and m["n_prompts"] == 8 and m["n_pairs"] == 4
    assert m["accuracy"] == (4 / 8 + 1) / 2
    assert m["both_orders_accuracy"] == (1 / 4 + 1) / 2 and m["consistency"] == (2 / 4 + 1) / 2
    assert m["accuracy_by_difficulty"] == {"easy": (3 / 4 + 1) / 2, "medium": None, "hard": (1 / 4 + 1) / 2}
    assert m["format_error_rate"] == 1 / 16 and m["position1_rate"] == (4 / 7 + 4 / 8) / 2
    with pytest.raises(ValueError, match="same number"):
        evaluate_judge(prompts, lambda ps: [[Answer(1, 1, False)] * (1 + (i == 0)) for i, _ in enumerate(ps)])


def test_metrics_of_an_empty_split_and_mismatched_answers():
    m = evaluate_judge([], lambda ps: [])
    assert m["accuracy"] is None and m["position1_rate"] is None and m["n_pairs"] == 0
    prompts = pair_prompts("test", PROBLEMS, POOLS, None, seed=0)
    with pytest.raises(ValueError):
        pairwise_metrics(prompts, [])


def synthetic(n_problems: int):
    """n problems with one passing and one failing program each (both orders: 2n prompts)."""
    problems = [{"id": f"lcb/{i}", "difficulty": "easy"} for i in range(n_problems)]
    pools = {p["id"]: [cand(0, True), cand(1, False)] for p in problems}
    return pair_prompts("test", problems, pools, None, seed=0)


def test_a_pure_position_bias_judge():
    prompts = synthetic(30)
    m = evaluate_judge(prompts, lambda ps: [[Answer(1, 1, False)] for _ in ps])
    assert m["accuracy"] == 0.5 and m["position1_rate"] == 1.0 and m["swap_consistency"] == 0.0
    assert m["accuracy_by_order"] == {"pass_first": 1.0, "pass_second": 0.0}
    assert m["accuracy_ci95"] == [0.5, 0.5]  # every problem scores exactly 1/2
    assert m["accuracy_by_order_ci95"] == {"pass_first": [1.0, 1.0], "pass_second": [0.0, 0.0]}


def test_a_content_perfect_judge():
    prompts = synthetic(30)
    m = evaluate_judge(prompts, lambda ps: [[Answer(p.correct_position, p.correct_position, False)] for p in ps])
    assert m["accuracy"] == 1.0 and m["swap_consistency"] == 1.0 and m["both_orders_accuracy"] == 1.0
    assert m["position1_rate"] == 0.5 and m["accuracy_ci95"] == [1.0, 1.0]


def noisy_answers(prompts, p_right: float, seed: int):
    import numpy as np

    rng = np.random.default_rng(seed)
    return [[Answer(p.correct_position if rng.random() < p_right else 3 - p.correct_position, None, True)]
            for p in prompts]


def test_bootstrap_intervals_contain_the_estimate_and_shrink():
    widths = []
    for n in (20, 320):
        prompts = synthetic(n)
        answers = noisy_answers(prompts, 0.7, seed=n)
        m = evaluate_judge(prompts, lambda ps, a=answers: a)
        lo, hi = m["accuracy_ci95"]
        assert lo < m["accuracy"] < hi
        for key in ("pass_first", "pass_second"):
            olo, ohi = m["accuracy_by_order_ci95"][key]
            assert olo <= m["accuracy_by_order"][key] <= ohi
        widths.append(hi - lo)
        # a normal-approximation width for a proportion of 2n prompts, clustered by problem
        assert 0.5 * 3.92 * (0.21 / (2 * n)) ** 0.5 < hi - lo < 2.5 * 3.92 * (0.21 / (2 * n)) ** 0.5
    assert widths[1] < widths[0] / 2.5  # 16 times the problems: about a quarter of the width


def test_bootstrap_ci_against_exact_resampling():
    """Two problems, 1/1 and 0/1 right: resampling gives 0, 1/2 or 1 with probabilities 1/4, 1/2, 1/4."""
    from daj.eval.pairwise import bootstrap_ci

    assert bootstrap_ci([(1, 1), (0, 1)], reps=4000, level=0.5) == [0.5, 0.5]
    lo, hi = bootstrap_ci([(1, 1), (0, 1)], reps=4000, level=0.95)
    assert (lo, hi) == (0.0, 1.0)
    assert bootstrap_ci([]) is None and bootstrap_ci([(0, 0)]) is None


class AlwaysFirst:
    """An engine double that answers every prompt with the tag of candidate 1."""

    name = "always-first"

    def __init__(self):
        self.prompts = 0

    def generate(self, prompts, params, prefixes=None):
        self.prompts += len(prompts)
        return [[Completion("<selection>1</selection>", "stop", 10, 5)] * params.n for _ in prompts]

    def close(self):
        pass


def test_runner_select_asks_once_per_ordered_pair():
    engine = AlwaysFirst()
    runner = JudgeRunner(engine, JudgeConfig(max_new_tokens=8, force_selection=False, force_sampling=False))
    prompts = pair_prompts("test", PROBLEMS, POOLS, max_pairs=1, seed=0)
    m = evaluate_judge(prompts, runner_select(runner, seed=0))
    assert engine.prompts == len(prompts) == 4  # one pair per problem, two orders
    assert m["accuracy"] == 0.5 and m["position1_rate"] == 1.0 and m["consistency"] == 0.0
    assert m["both_orders_accuracy"] == 0.0 and m["format_error_rate"] == 0.0
    m3 = evaluate_judge(prompts, runner_select(runner, seed=0, responses=3))
    assert engine.prompts == 8 and m3["responses_per_prompt"] == 3 and m3["accuracy"] == 0.5


class ReadsCode:
    """An engine double that scores the options by a strong position-1 bias plus a weaker preference for
    the passing program (print(0) here), as a selection-only judge."""

    name = "reads-code"

    def __init__(self):
        self.scored = 0

    def generate(self, prompts, params, prefixes=None):
        raise AssertionError("selection only: nothing is generated")

    def score_continuations(self, prompt, prefix, options):
        self.scored += 1
        text = prompt[-1]["content"]
        good = 1 if text.index("print(0)") < text.index("print(2)") else 2
        return [(3.0 if k == 1 else 0.0) + (1.0 if k == good else 0.0) for k in (1, 2)]

    def close(self):
        pass


def test_swap_select_combines_both_orders_without_further_calls():
    """A pure position-1 judge: every pair a tie, decided by one coin for both orders. A position bias
    stronger than the content preference: each order alone is at chance, the combination always right."""
    prompts = pair_prompts("test", PROBLEMS, POOLS, max_pairs=1, seed=0)
    engine = AlwaysFirst()
    runner = JudgeRunner(engine, JudgeConfig(max_new_tokens=8, force_selection=False, force_sampling=False))
    plain = evaluate_judge(prompts, runner_select(runner, seed=0))
    calls = engine.prompts
    combined = evaluate_judge(prompts, swap_select(runner, seed=0), combined=True)
    assert engine.prompts == calls  # the same requests: answered from the cache
    assert plain["swap_consistency"] == 0.0 and combined["tie_rate"] == 1.0
    assert combined["swap_consistency"] == 1.0 and "forced_rate" not in combined

    only_a = pair_prompts("test", PROBLEMS[:1], {"lcb/a": [cand(0, True), cand(2, False)]}, max_pairs=1, seed=0)
    engine = ReadsCode()
    runner = JudgeRunner(engine, JudgeConfig(mode="select", force_selection=False, force_sampling=False))
    plain = evaluate_judge(only_a, runner_select(runner, seed=0))
    combined = evaluate_judge(only_a, swap_select(runner, seed=0), combined=True)
    assert plain["position1_rate"] == 1.0 and plain["accuracy"] == 0.5
    assert combined["accuracy"] == 1.0 and combined["tie_rate"] == 0.0 and engine.scored == 2


@pytest.fixture(scope="module")
def stage_run(tiny_model, tmp_path_factory):
    """The stage on 3 HumanEval test problems with the tiny judge, without and with an adapter."""
    from daj.models.loading import load_causal_lm
    from daj.train.lora import add_lora, save_adapter

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("pairwise")
    # the likeliest forced index (no sampling): answers are a function of the model's outputs alone
    make_workspace(root, tiny_model, pairwise__max_pairs_per_problem=2, judge__force_sampling=False)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        pairwise_stage.main(load_config())
        base_only = json.loads((root / "metrics/pairwise.json").read_text())
        model, tok = load_causal_lm(tiny_model)
        save_adapter(add_lora(model, r=4, alpha=8, targets=["q_proj", "v_proj"]), tok, root / "models/judge")
        pairwise_stage.main(load_config())
        both = json.loads((root / "metrics/pairwise.json").read_text())
    return base_only, both


def test_stage_with_the_tiny_judge(stage_run):
    base_only, both = stage_run
    assert set(base_only["judges"]) == {"base"} and set(both["judges"]) == {"base", "trained"}
    assert both["split"] == "test" and both["policies"] == ["mutants"] and both["max_pairs_per_problem"] == 2
    base, trained = both["judges"]["base"], both["judges"]["trained"]
    assert base["adapter"] is None and trained["adapter"] == "models/judge"
    # 3 problems x min(2 passing x 2 failing, 2) pairs, both orders; forced selection: no format error
    assert base["n_pairs"] == 6 and base["n_prompts"] == 12 and base["format_error_rate"] == 0.0
    # independent relations between metrics computed by different code paths (no format errors):
    # every raw format error is forced and nothing else is
    assert base["forced_rate"] == base["raw_format_error_rate"]
    # an equal number of prompts per order: accuracy is the mean of the two per-order accuracies
    order = base["accuracy_by_order"]
    assert base["accuracy"] == pytest.approx((order["pass_first"] + order["pass_second"]) / 2, abs=1e-12)
    # picking position 1 = right when the passing program is first, wrong when it is second
    assert base["position1_rate"] == pytest.approx((order["pass_first"] + 1 - order["pass_second"]) / 2, abs=1e-12)
    # the same program in both orders = both right or both wrong
    assert base["swap_consistency"] == pytest.approx(
        1 - order["pass_first"] - order["pass_second"] + 2 * base["both_orders_accuracy"], abs=1e-12)
    lo, hi = base["accuracy_ci95"]
    assert lo <= base["accuracy"] <= hi
    # LoRA's B starts at zero: the fresh adapter does not change any answer (but is asked: own cache key)
    metric_keys = [key for key in base if key not in ("adapter", "seconds")]
    assert {key: trained[key] for key in metric_keys} == {key: base[key] for key in metric_keys}
    assert base_only["judges"]["base"]["accuracy"] == base["accuracy"]


def test_stage_rejects_a_directory_that_is_not_an_adapter(tiny_model, tmp_path, monkeypatch):
    make_workspace(tmp_path, tiny_model)
    (tmp_path / "models/judge").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DajError, match="not a PEFT adapter"):
        pairwise_stage.main(load_config())


def test_stage_with_swap_adds_the_combined_metrics_at_no_extra_call(tiny_model, tmp_path, monkeypatch):
    make_workspace(tmp_path, tiny_model, pairwise__max_pairs_per_problem=1, bon__swap=True)
    monkeypatch.chdir(tmp_path)
    pairwise_stage.main(load_config())
    out = json.loads((tmp_path / "metrics/pairwise.json").read_text())
    base = out["judges"]["base"]
    assert out["swap"] is True and base["swap"]["n_prompts"] == base["n_prompts"] == 6
    assert base["swap"]["swap_consistency"] == 1.0 and 0.0 <= base["swap"]["tie_rate"] <= 1.0
    assert "seconds" not in base["swap"]  # timings go to the log
    assert json.loads((tmp_path / "logs/pairwise.json").read_text())["base"]["swap"]["seconds"] >= 0
    from daj.judge.cache import JudgeCache

    assert len(JudgeCache(tmp_path / ".cache/judge")) == 6  # the two orders are the plain prompts themselves
