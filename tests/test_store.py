"""The shared key-value store: values round-trip, survive reopening, and threads may share it."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from daj.store import Store


def test_round_trip_reopen_and_odd_strings(tmp_path):
    store = Store(tmp_path, "calls")
    store.put_json("a", {"text": "lone \ud800 surrogate", "n": [1, 2]})
    store.put_bytes("b", b"\x00\xff")
    store.close()
    again = Store(tmp_path, "calls")
    assert again.get_json("a") == {"text": "lone \ud800 surrogate", "n": [1, 2]}
    assert again.get_bytes("b") == b"\x00\xff" and again.get_json("b") is None and again.get_json("zz") is None
    assert len(again) == 2


def test_threads_share_one_store(tmp_path):
    store = Store(tmp_path, "v")
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: store.put_json(f"k{i}", i), range(200)))
    assert len(store) == 200 and all(store.get_json(f"k{i}") == i for i in range(200))
    assert Store(None, "mem").get_json("x") is None
