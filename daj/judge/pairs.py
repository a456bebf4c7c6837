"""Judge training data: (pass, fail) candidate pairs in both orders, judged and scored.

For each problem, the candidates of the split's policies are pooled; every pair of one passing and
one failing program is a "mixed" pair. With a `max_problems` cap, only a seeded choice of that many
of the split's problems with a mixed pair is judged (`choose_problems`). Per problem, at most
`max_pairs` mixed pairs are kept (a seeded uniform choice without replacement), and each is shown
in both orders, so that the passing program sits at position 1 once and at position 2 once. Each
ordered pair is one judge prompt (a `group`), answered `responses` times by the current judge; each
response is scored with the verifiable reward. Preference records pair every correct response of a group (chosen) with every
wrong or format-error response of the same group (rejected); a (chosen, rejected) text pair that
a group already gave is not repeated (in the selection-only mode every correct response is the
same tag, so a group gives at most one record).

Ids (stable across runs with the same inputs):
  group            <split>/<problem_id>/<policy>:<index>|<policy>:<index>   (shown order)
  scored rollout   <group>#r<k>                                            (k-th response)
  preference       <group>#r<c>>r<j>                                       (chosen c, rejected j)
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from daj.config import RewardConfig
from daj.data.pools import PoolCandidate
from daj.judge.prompt import build_messages, render_prompt
from daj.judge.reward import reward_of
from daj.judge.runner import CallStats, JudgeRequest, JudgeRunner
from daj.judge.voting import stable_seed


@dataclass(frozen=True)
class PairPrompt:
    """One ordered (pass, fail) or (fail, pass) pair of a problem."""

    group: str
    problem: dict
    shown: tuple[PoolCandidate, PoolCandidate]
    correct_position: int


def mixed_pairs(cands: list[PoolCandidate], max_pairs: int | None,
                rng: np.random.Generator) -> list[tuple[PoolCandidate, PoolCandidate]]:
    """(passing, failing) pairs, at most `max_pairs` of them (seeded uniform choice, original order kept)."""
    passing = [c for c in cands if c.passed]
    failing = [c for c in cands if not c.passed]
    pairs = [(p, f) for p in passing for f in failing]
    if max_pairs is not None and len(pairs) > max_pairs:
        keep = sorted(rng.choice(len(pairs), size=max_pairs, replace=False).tolist())
        pairs = [pairs[i] for i in keep]
    return pairs


def has_mixed_pair(cands: list[PoolCandidate]) -> bool:
    """True when the pool has a passing and a failing candidate."""
    return len({c.passed for c in cands}) == 2


def choose_problems(split: str, problems: list[dict], pools: dict[str, list[PoolCandidate]],
                    max_problems: int | None, seed: int) -> tuple[list[dict], dict]:
    """The problems to judge: all of them (no cap), or a seeded uniform choice of `max_problems`
    among those with a mixed pair, in the split's order; plus the counts for the metrics.

    The choice depends only on (seed, split, the ids of the problems with a mixed pair): it is drawn
    from those ids sorted, so the order of the split file does not matter.
    """
    mixed = [p for p in problems if has_mixed_pair(pools.get(p["id"], []))]
    if max_problems is None or len(mixed) <= max_problems:
        chosen = problems if max_problems is None else mixed
    else:
        ids = sorted(p["id"] for p in mixed)
        rng = np.random.default_rng(stable_seed(seed, "pairs", "problems", split))
        keep = {ids[i] for i in rng.choice(len(ids), size=max_problems, replace=False).tolist()}
        chosen = [p for p in mixed if p["id"] in keep]
    judged = sum(has_mixed_pair(pools.get(p["id"], [])) for p in chosen)
    return chosen, {"problems_with_mixed_pair": len(mixed), "problems_judged": judged}


def pair_prompts(split: str, problems: list[dict], pools: dict[str, list[PoolCandidate]],
                 max_pairs: int | None, seed: int) -> list[PairPrompt]:
    """Both orders of the chosen mixed pairs of every problem."""
    out = []
    for problem in problems:
        pid = problem["id"]
        rng = np.random.default_rng(stable_seed(seed, "pairs", split, pid))
        for good, bad in mixed_pairs(pools.get(pid, []), max_pairs, rng):
            for shown, pos in (((good, bad), 1), ((bad, good), 2)):
                group = f"{split}/{pid}/{shown[0].policy}:{shown[0].index}|{shown[1].policy}:{shown[1].index}"
                out.append(PairPrompt(group, problem, shown, pos))
    return out


@dataclass
class PairsResult:
    records: list[dict]
    scored: list[dict]
    metrics: dict


@dataclass
class Writer:
    """A trajectory model answering the pair prompts: its name in the records, its runner, its seed."""

    name: str
    runner: JudgeRunner | Callable[[], JudgeRunner]  # or a factory called when its turn comes
    seed: int
    desc: str | None = None  # progress-bar label
    done: Callable[[], None] | None = None  # called once its answers are in (frees its engine)


def _summary(rows: list[dict], n_records: int) -> dict:
    """Rates over scored rows (the metrics shared by a split and each of its trajectory models)."""
    n = max(len(rows), 1)
    labels = Counter(r["label"] for r in rows)
    parsed = [r["selection"] for r in rows if r["selection"] is not None]
    return {
        "responses": len(rows),
        "preference_records": n_records,
        "judge_accuracy": labels["correct"] / n,
        "wrong_rate": labels["wrong"] / n,
        "format_error_rate": labels["format_error"] / n,
        "raw_format_error_rate": sum(r["raw_selection"] is None for r in rows) / n,
        "forced_rate": sum(r["forced"] for r in rows) / n,
        "position1_rate": sum(s == 1 for s in parsed) / len(parsed) if parsed else None,
        "mean_reward": sum(r["reward"] for r in rows) / n,
    }


def _runner(w: Writer) -> JudgeRunner:
    return w.runner if isinstance(w.runner, JudgeRunner) else w.runner()


def judge_pairs(split: str, prompts: list[PairPrompt], writers: list[Writer] | JudgeRunner, tokenizer,
                responses: int, levels: RewardConfig, seed: int, max_chars: int | None = None) -> PairsResult:
    """Sample `responses` answers per ordered pair from every writer, score them, build the records.

    A bare JudgeRunner is the judge as the only writer. Responses are numbered across writers (the
    first writer's are r0..r<responses-1>, the next one's follow); preference records pair responses
    of one group written by the same trajectory model. Prompts are built with `max_chars` (default:
    the first writer's judge.max_prompt_chars) and rendered with the judge's `tokenizer`.
    """
    if isinstance(writers, JudgeRunner):
        writers = [Writer("judge", writers, seed)]
    if max_chars is None:
        max_chars = _runner(writers[0]).settings.max_prompt_chars
    chats = [build_messages(p.problem, [p.shown[0].code, p.shown[1].code], max_chars) for p in prompts]
    answers, costs = [], {}
    for w in writers:
        runner = _runner(w)
        got, stats = runner.respond([JudgeRequest(chat, 2, n=responses, seed=w.seed) for chat in chats],
                                    desc=w.desc or f"pairs {split}: {w.name} ({runner.label})")
        answers.append(got)
        costs[w.name] = stats
        if w.done is not None:
            w.done()
    records, scored = [], []
    records_by_writer: Counter = Counter()
    per_domain: dict[str, Counter] = defaultdict(Counter)
    for i, (pp, chat) in enumerate(zip(prompts, chats, strict=True)):
        domain = pp.problem.get("domain") or "unknown"
        text = render_prompt(tokenizer, chat)
        base = {"problem_id": pp.problem["id"], "domain": domain, "correct_position": pp.correct_position}
        group_records = 0
        for w_index, w in enumerate(writers):
            scored_group = []
            for k, ans in enumerate(answers[w_index][i]):
                reward, label = reward_of(ans.selection, pp.correct_position, levels)
                row = {"id": f"{pp.group}#r{w_index * responses + k}", "group": pp.group, **base, "prompt": text,
                       "messages": chat, "response": ans.text, "reward": reward, "label": label, "selection": ans.selection,
                       "raw_selection": ans.raw_selection, "forced": ans.forced,
                       "candidates": [pp.shown[0].index, pp.shown[1].index],
                       "candidate_policies": [pp.shown[0].policy, pp.shown[1].policy], "trajectory_model": w.name}
                scored_group.append(row)
            scored.extend(scored_group)
            chosen = [r for r in scored_group if r["label"] == "correct"]
            rejected = [r for r in scored_group if r["label"] != "correct"]
            seen: set[tuple[str, str]] = set()
            for c in chosen:
                for r in rejected:
                    if (c["response"], r["response"]) in seen:
                        continue
                    seen.add((c["response"], r["response"]))
                    records.append({"id": f"{c['id']}>{r['id'].rsplit('#', 1)[1]}", "group": pp.group, **base,
                                    "prompt": text, "messages": chat, "chosen": c["response"],
                                    "rejected": r["response"], "rejected_label": r["label"],
                                    "candidates": c["candidates"], "candidate_policies": c["candidate_policies"],
                                    "trajectory_model": w.name})
            records_by_writer[w.name] += len(seen)
            group_records += len(seen)
        per_domain[domain]["prompts"] += 1
        per_domain[domain]["records"] += group_records
    total = CallStats()
    for stats in costs.values():
        total.add(stats)
    metrics = {
        "problems": len({p.problem["id"] for p in prompts}),
        "pairs": len(prompts) // 2,
        "prompts": len(prompts),
        **_summary(scored, len(records)),
        "domains": {d: {"pairs": c["prompts"] // 2, "preference_records": c["records"]}
                    for d, c in sorted(per_domain.items())},
        "judge_cost": total.to_dict(),
        "by_trajectory_model": {
            w.name: {**_summary([r for r in scored if r["trajectory_model"] == w.name], records_by_writer[w.name]),
                     "judge_cost": costs[w.name].to_dict()} for w in writers},
    }
    return PairsResult(records, scored, metrics)
