"""A persistent store of reference log-probabilities, shared by training runs on the same base model.

The DPO/KTO/GRPO reference is the frozen base model, so a sequence's per-token reference log-probs
are the same in every run that trains that base model on the same tokens (e.g. the three runs of the
smol experiment, which differ only in the reweighting). A cache must not change a result, so a stored
value is exactly what a cold run would compute (daj.train.data computes every reference value alone,
one sequence at a time): the key is a SHA-256 of everything that decides those bits, namely the base
model's content fingerprint and precision, the logits temperature, the token ids and response start,
the computation's version (STORE_VERSION: bump it when daj.train.logprobs changes its arithmetic), and
the runtime (torch version, device, CPU threads). Values are float32 arrays in one SQLite file under
caches.train_ref.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from daj.hashing import sha256_hex
from daj.store import Store
from daj.train.logprobs import TokenizedSeq

STORE_VERSION = 2  # 2: TRL's selective_log_softmax, logits temperature in the key


class ReferenceStore:
    """(model, sequence) -> per-token reference log-probs, in `directory`/reference.sqlite (daj.store)."""

    def __init__(self, directory: str | Path, model_key: str):
        self._store = Store(directory, "reference")
        self.model_key = model_key
        self.hits = self.misses = 0

    def key(self, seq: TokenizedSeq, temperature: float = 1.0) -> str:
        return sha256_hex(f"{STORE_VERSION}\0{self.model_key}\0{temperature!r}\0{seq.start}\0"
                          + ",".join(map(str, seq.ids)))

    def get(self, seq: TokenizedSeq, temperature: float = 1.0) -> torch.Tensor | None:
        blob = self._store.get_bytes(self.key(seq, temperature))
        if blob is None or len(blob) != 4 * seq.n_response:  # a torn or foreign value is recomputed
            self.misses += 1
            return None
        self.hits += 1
        return torch.from_numpy(np.frombuffer(blob, dtype=np.float32).copy())

    def put(self, seq: TokenizedSeq, values: torch.Tensor, temperature: float = 1.0) -> None:
        self._store.put_bytes(self.key(seq, temperature), values.detach().to(torch.float32).cpu().numpy().tobytes())

    def __len__(self) -> int:
        return len(self._store)

    def close(self) -> None:
        self._store.close()


def model_key(model_ref: str, precision: str, device: str = "cpu") -> str | None:
    """The store's model and runtime part: the base model's content fingerprint and precision, the
    torch version, the device and the CPU thread count (None = not a local model whose content can be
    fingerprinted; then no store is used)."""
    from daj.hashing import checkpoint_digest

    digest = checkpoint_digest(model_ref)
    runtime = f"torch {torch.__version__}, {device}, {torch.get_num_threads()} threads"
    return None if digest is None else f"{digest}\0{precision}\0{runtime}"
