"""The openai engine against our OpenAI-compatible server over real HTTP on localhost."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from daj.engines.base import SamplingParams
from daj.engines.openai_engine import OpenAIEngine
from daj.engines.registry import make_engine
from daj.errors import DajError
from daj.testing.openai_server import Handler, make_server

CHATS = [[{"role": "user", "content": "def add(a, b):"}], [{"role": "user", "content": "Sort a list."}],
         [{"role": "user", "content": "x"}]]


@pytest.fixture(scope="module")
def server(tiny_engine):
    srv = make_server(tiny_engine, "tiny", port=0, api_key="sekret")
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def client(server, monkeypatch):
    monkeypatch.setenv("DAJ_TEST_KEY", "sekret")
    return OpenAIEngine("tiny", base_url=server.url, api_key_env="DAJ_TEST_KEY", concurrency=2,
                        max_retries=1, backoff_s=0.01)


def test_generate_over_http_matches_settings(client):
    p = SamplingParams(n=3, max_new_tokens=5, seed=2)
    out = client.generate(CHATS, p)
    assert len(out) == 3 and all(len(c) == 3 for c in out)
    for comps in out:
        for c in comps:
            assert 1 <= c.completion_tokens <= 5 and c.prompt_tokens > 0
            assert c.finish_reason == ("length" if c.completion_tokens == 5 else "stop")
    # seeded: the same request gives the same completions, whatever the concurrency
    again = OpenAIEngine("tiny", base_url=client.base_url, api_key_env="DAJ_TEST_KEY", concurrency=1)
    assert [[c.text for c in cs] for cs in out] == [[c.text for c in cs] for cs in again.generate(CHATS, p)]
    assert client.models() == ["tiny"]


def test_prefix_is_continued(client):
    plain = client.generate(CHATS[:1], SamplingParams(n=1, max_new_tokens=3))[0][0]
    cont = client.generate(CHATS[:1], SamplingParams(n=1, max_new_tokens=3), prefixes=["<selection>"])[0][0]
    assert cont.prompt_tokens > plain.prompt_tokens


def test_bad_requests_are_clear_errors(server, client, monkeypatch):
    monkeypatch.setenv("DAJ_TEST_KEY", "wrong")
    bad_key = OpenAIEngine("tiny", base_url=server.url, api_key_env="DAJ_TEST_KEY", max_retries=0)
    with pytest.raises(DajError, match="401"):
        bad_key.generate(CHATS[:1], SamplingParams(max_new_tokens=2))
    monkeypatch.setenv("DAJ_TEST_KEY", "sekret")
    wrong_model = OpenAIEngine("other", base_url=server.url, api_key_env="DAJ_TEST_KEY", max_retries=0)
    with pytest.raises(DajError, match="404.*not served"):
        wrong_model.generate(CHATS[:1], SamplingParams(max_new_tokens=2))
    with pytest.raises(DajError, match="refused.*400"):
        client.request("/chat/completions", {"model": "tiny", "messages": [], "max_tokens": 2})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_server_down_is_a_clear_error():
    port = _free_port()  # nothing listens there
    eng = make_engine({"backend": "openai", "model": "m", "base_url": f"http://127.0.0.1:{port}/v1",
                       "max_retries": 2, "backoff_s": 0.01})
    start = time.perf_counter()
    with pytest.raises(DajError, match="not answering after 3 tries.*running"):
        eng.generate(CHATS[:1], SamplingParams(max_new_tokens=2))
    assert time.perf_counter() - start >= 0.03  # backed off 0.01 + 0.02 s


def test_retries_with_backoff_then_succeeds(tiny_engine, monkeypatch):
    class Flaky(Handler):
        failures = 2

        def do_POST(self):  # noqa: N802
            if Flaky.failures > 0:
                Flaky.failures -= 1
                self._error(503, "warming up")
                return
            super().do_POST()

    srv = make_server(tiny_engine, "tiny", port=0)
    srv.RequestHandlerClass = Flaky
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        sleeps = []
        monkeypatch.setattr("daj.engines.openai_engine.time.sleep", sleeps.append)
        eng = OpenAIEngine("tiny", base_url=srv.url, api_key_env=None, max_retries=3, backoff_s=0.5)
        out = eng.generate(CHATS[:1], SamplingParams(n=2, max_new_tokens=2))
        assert len(out[0]) == 2 and sleeps == [0.5, 1.0] and Flaky.failures == 0
        Flaky.failures = 5
        with pytest.raises(DajError, match="not answering after 2 tries.*503"):
            OpenAIEngine("tiny", base_url=srv.url, api_key_env=None, max_retries=1, backoff_s=0.5).generate(
                CHATS[:1], SamplingParams(max_new_tokens=2))
    finally:
        srv.shutdown()
        srv.server_close()


def test_serve_cli_subprocess(tiny_model):
    """`python -m daj.testing.openai_server` answers /v1/models and a chat completion."""
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "daj.testing.openai_server", "--model", tiny_model,
                             "--served-model-name", "tiny", "--port", str(port), "--device", "cpu"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert f"127.0.0.1:{port}/v1" in line, line
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=30) as r:
            assert json.loads(r.read())["data"][0]["id"] == "tiny"
        out = OpenAIEngine("tiny", base_url=f"http://127.0.0.1:{port}/v1", api_key_env=None).generate(
            CHATS[:1], SamplingParams(n=2, max_new_tokens=3))
        assert len(out[0]) == 2
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_reasoning_api_style_sends_no_sampling_settings(tiny_engine):
    """api: openai-reasoning (OpenAI's o-series) sends n, seed and max_completion_tokens only; our server
    reads that budget, and the default style still sends vLLM's sampling fields."""
    bodies = []

    class Recording(Handler):
        def do_POST(self):  # noqa: N802
            length = int(self.headers.get("Content-Length", 0))
            body = self.rfile.read(length)
            bodies.append(json.loads(body))
            self.rfile = io.BytesIO(body)
            self.headers.replace_header("Content-Length", str(len(body)))
            super().do_POST()

    srv = make_server(tiny_engine, "tiny", port=0)
    srv.RequestHandlerClass = Recording
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        params = SamplingParams(n=2, temperature=0.7, top_k=20, repetition_penalty=1.05, max_new_tokens=3)
        out = OpenAIEngine("tiny", base_url=srv.url, api_key_env=None, api="openai-reasoning").generate(
            CHATS[:1], params)
        assert len(out[0]) == 2 and all(c.completion_tokens <= 3 for c in out[0])
        sent = {k for k in bodies[-1] if k != "messages"}
        assert sent == {"model", "n", "seed", "max_completion_tokens"} and bodies[-1]["max_completion_tokens"] == 3
        OpenAIEngine("tiny", base_url=srv.url, api_key_env=None).generate(CHATS[:1], params)
        assert {"temperature", "top_k", "repetition_penalty", "max_tokens"} <= set(bodies[-1])
    finally:
        srv.shutdown()
        srv.server_close()
    with pytest.raises(DajError, match="api must be one of"):
        OpenAIEngine("tiny", api="anthropic")
