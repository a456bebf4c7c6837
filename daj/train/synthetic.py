"""Synthetic judge-training data for controlled experiments and tests (not benchmark data).

Each pair asks the judge to compare two candidates; the chosen response carries a verdict pattern
("the candidate is correct") and the rejected one the opposite, with random filler words around it,
so a tiny random model can learn the preference from the responses alone. `corrupt` domains have
chosen and rejected swapped in the lower (training) split; the upper (meta) split is always clean.
The files follow the pairs-stage formats (data/pairs/{lower,upper}.jsonl and *_scored.jsonl).
"""

from __future__ import annotations

import random
from pathlib import Path

from daj.io import write_jsonl

WORDS = ("loop", "index", "array", "sum", "value", "input", "output", "range", "list", "case", "edge", "test")
GOOD = "verdict: the candidate is correct"
BAD = "verdict: the candidate is wrong"


def chat_prompt(content: str) -> str:
    """ChatML rendering with add_generation_prompt=True (the tiny model's chat template)."""
    return f"<|im_start|>user\n{content}<|im_end|>\n<|im_start|>assistant\n"


def _response(rng: random.Random, verdict: str) -> str:
    filler = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 3)))
    return f"checked {filler}. {verdict}"


def make_rows(split: str, domains: list[str], n_per_domain: int, corrupt: set[str], seed: int) -> tuple[list, list]:
    """(pairs, scored rollouts) of one split."""
    rng = random.Random(f"{seed}:{split}")
    pairs, scored = [], []
    for d in domains:
        for k in range(n_per_domain):
            words = " ".join(rng.choice(WORDS) for _ in range(4))
            prompt = chat_prompt(f"[{d}] problem {k}: {words}. Which candidate is correct?")
            chosen, rejected = _response(rng, GOOD), _response(rng, BAD)
            if d in corrupt:
                chosen, rejected = rejected, chosen
            pid = f"synthetic/{split}/{d}/{k}"
            pos = rng.choice((1, 2))
            pairs.append({"id": f"{pid}#0", "problem_id": pid, "domain": d, "prompt": prompt,
                          "messages": [{"role": "user", "content": prompt}], "chosen": chosen, "rejected": rejected,
                          "candidates": [0, 1], "correct_position": pos})
            for j, (resp, good) in enumerate(((chosen, True), (rejected, False), (_response(rng, GOOD if d not in corrupt else BAD), True),
                                              (_response(rng, BAD if d not in corrupt else GOOD), False))):
                scored.append({"id": f"{pid}#r{j}", "group": pid, "problem_id": pid, "domain": d, "prompt": prompt,
                               "response": resp, "reward": 1.0 if good else 0.0,
                               "label": "correct" if good else "wrong", "selection": pos if good else 3 - pos,
                               "correct_position": pos})
    return pairs, scored


def write_noisy_domain_data(out_dir: str | Path, seed: int = 0, n_per_domain: int = 12, n_meta_per_domain: int = 6,
                            domains: tuple[str, ...] = ("alpha", "beta", "gamma"),
                            corrupt: tuple[str, ...] = ("gamma",)) -> Path:
    """Write lower/upper pairs and scored rollouts; the `corrupt` domains are swapped in lower only."""
    out = Path(out_dir)
    lower_pairs, lower_scored = make_rows("lower", list(domains), n_per_domain, set(corrupt), seed)
    upper_pairs, upper_scored = make_rows("upper", list(domains), n_meta_per_domain, set(), seed)
    write_jsonl(out / "lower.jsonl", lower_pairs)
    write_jsonl(out / "upper.jsonl", upper_pairs)
    write_jsonl(out / "lower_scored.jsonl", lower_scored)
    write_jsonl(out / "upper_scored.jsonl", upper_scored)
    return out


def corpus(seed: int = 0) -> list[str]:
    """Texts to train the tiny model's tokenizer on."""
    pairs, _ = make_rows("corpus", ["alpha", "beta", "gamma"], 20, set(), seed)
    return [p["prompt"] + p["chosen"] + p["rejected"] for p in pairs]
