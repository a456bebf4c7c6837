"""Tokenisation and masks, batching, resumable streams, and the weight models."""

from __future__ import annotations

import json

import pytest
import torch

from daj.errors import DajError
from daj.train.data import BatchStream, PreferenceData, read_scored
from daj.train.logprobs import collate, tokenize_sequence
from daj.train.synthetic import corpus, make_rows


@pytest.fixture(scope="module")
def tok():
    from daj.models.tiny import train_tokenizer

    return train_tokenizer(corpus(), vocab_size=400)


def test_response_mask_covers_response_and_eos_only(tok):
    seq = tokenize_sequence(tok, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n", "checked loop", 1024)
    response = tok.decode(list(seq.ids[seq.start:]))
    assert response == "checked loop<|im_end|>"
    batch = collate([seq, tokenize_sequence(tok, "x", "y", 1024)], tok.pad_token_id)
    assert batch["response_mask"][0].sum() == seq.n_response
    assert batch["attention_mask"][1].sum() == len(tokenize_sequence(tok, "x", "y", 1024).ids)
    assert not batch["response_mask"][1, batch["attention_mask"][1] == 0].any()  # padding never scored


def test_truncation_drops_prompt_first(tok):
    long_prompt = " ".join(["loop index array"] * 100)
    seq = tokenize_sequence(tok, long_prompt, "checked value", 16)
    assert len(seq.ids) == 16 and tok.decode(list(seq.ids[seq.start:])) == "checked value<|im_end|>"
    seq = tokenize_sequence(tok, "p", " ".join(["value"] * 50), 8)
    assert len(seq.ids) == 8 and seq.start >= 1


def test_stream_is_deterministic_and_resumable(tok):
    pairs, _ = make_rows("lower", ["alpha", "beta"], 5, set(), 0)
    data = PreferenceData("dpo", tok, 256, pairs, ["alpha", "beta"])
    a = BatchStream(data, 2, seed=3)
    draws = [a.units_for_draw(k) for k in range(12)]
    b = BatchStream(data, 2, seed=3, start=7)
    it = iter(b)
    first = next(it)
    assert torch.equal(first["index"], torch.tensor(draws[7]))
    epoch = sorted(u for d in draws[:5] for u in d)
    assert epoch == list(range(10))  # each epoch is a permutation


def test_kto_partners_and_grpo_groups(tok):
    _, scored = make_rows("lower", ["alpha", "beta"], 3, set(), 0)
    kto = PreferenceData("kto", tok, 256, scored, ["alpha", "beta"], seed=1)
    for u, row in zip(kto.units, scored, strict=True):  # KL pair: same prompt, a response to another prompt
        main, kl = kto.seqs[u.seqs[0]], kto.seqs[u.seqs[1]]
        assert main.ids[: main.start] == kl.ids[: kl.start]
        kl_response = tok.decode(list(kl.ids[kl.start:])).removesuffix("<|im_end|>")
        assert any(r["response"] == kl_response and r["prompt"] != row["prompt"] for r in scored)
    grpo = PreferenceData("grpo", tok, 256, scored, ["alpha", "beta"], grpo_group=3)
    assert len(grpo.units) == 6 and all(len(u.seqs) == 3 for u in grpo.units)
    batch = grpo.batch([0])
    assert batch["advantages"].shape == (3,) and abs(float(batch["advantages"].sum())) < 1e-5


def test_bad_scored_row(tmp_path):
    _, scored = make_rows("lower", ["alpha"], 1, set(), 0)
    scored[1]["label"] = "maybe"
    path = tmp_path / "s.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in scored) + "\n")
    with pytest.raises(DajError, match=r"s.jsonl:2.*label"):
        read_scored(path)
