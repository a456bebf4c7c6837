"""A small OpenAI-compatible server (/v1/chat/completions, /v1/models) on top of the hf engine.

    python -m daj.engines.serve --model models/tiny [--adapter models/judge] [--port 8000]

It reads the same sampling fields as vLLM's server (n, temperature, top_p, top_k,
repetition_penalty, max_tokens / max_completion_tokens, seed) and vLLM's prefix convention
(`continue_final_message` with a final assistant message). Requests are served one at a time by
the model (a lock), while connections are handled in threads. An optional API key is checked when
the server is started with one. Meant for tests and small local runs, not production.
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from daj.engines.settings import from_openai
from daj.errors import DajError

log = logging.getLogger(__name__)


def _parse_messages(body: dict) -> tuple[list[dict], str | None]:
    """(chat prompt, prefix) of a request; the prefix is a continued final assistant message."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise DajError("'messages' must be a non-empty list", field="messages")
    for m in messages:
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise DajError("each message needs string 'role' and 'content'", field="messages")
    chat = [{"role": m["role"], "content": m["content"]} for m in messages]
    if body.get("continue_final_message"):
        if chat[-1]["role"] != "assistant":
            raise DajError("continue_final_message needs a final assistant message", field="messages")
        return chat[:-1], chat[-1]["content"]
    return chat, None


class ChatServer(ThreadingHTTPServer):
    """Holds the engine, its lock and the served model name."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], engine, model_name: str, api_key: str | None = None):
        super().__init__(address, Handler)
        self.engine, self.model_name, self.api_key = engine, model_name, api_key
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/v1"


class Handler(BaseHTTPRequestHandler):
    server: ChatServer

    def log_message(self, fmt: str, *args) -> None:
        log.debug("%s - " + fmt, self.address_string(), *args)

    def _send(self, status: int, obj: dict) -> None:
        data = json.dumps(obj).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str) -> None:
        self._send(status, {"error": {"message": message, "type": "invalid_request_error", "code": status}})

    def _authorised(self) -> bool:
        if not self.server.api_key:
            return True
        if self.headers.get("Authorization", "") == f"Bearer {self.server.api_key}":
            return True
        self._error(401, "invalid API key")
        return False

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        if not self._authorised():
            return
        if self.path.rstrip("/") == "/v1/models":
            self._send(200, {"object": "list", "data": [
                {"id": self.server.model_name, "object": "model", "created": 0, "owned_by": "daj"}]})
        else:
            self._error(404, f"no route {self.path}")

    def do_POST(self) -> None:  # noqa: N802
        if not self._authorised():
            return
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._error(404, f"no route {self.path}")
            return
        try:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length).decode("utf-8"))
            if not isinstance(body, dict):
                raise DajError("the request body must be a JSON object")
            if body.get("stream"):
                raise DajError("streaming is not supported", field="stream")
            if body.get("model") not in (None, self.server.model_name):
                self._error(404, f"model {body.get('model')!r} is not served here "
                                 f"(serving {self.server.model_name!r})")
                return
            chat, prefix = _parse_messages(body)
            params = from_openai(body)
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as e:
            self._error(400, f"invalid JSON: {e}")
            return
        except DajError as e:
            self._error(400, str(e))
            return
        with self.server.lock:
            comps = self.server.engine.generate([chat], params, [prefix] if prefix is not None else None)[0]
        choices = [{"index": i, "message": {"role": "assistant", "content": c.text},
                    "finish_reason": c.finish_reason, "completion_tokens": c.completion_tokens}
                   for i, c in enumerate(comps)]
        n_prompt = comps[0].prompt_tokens if comps else 0
        n_completion = sum(c.completion_tokens for c in comps)
        self._send(200, {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion",
                         "created": int(time.time()), "model": self.server.model_name, "choices": choices,
                         "usage": {"prompt_tokens": n_prompt, "completion_tokens": n_completion,
                                   "total_tokens": n_prompt + n_completion}})


def make_server(engine, model_name: str, host: str = "127.0.0.1", port: int = 8000,
                api_key: str | None = None) -> ChatServer:
    """A ready-to-serve server (port 0 picks a free port; see `.url`)."""
    return ChatServer((host, port), engine, model_name, api_key)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="model reference (path, hub id, gguf:<pkg>:<file>)")
    ap.add_argument("--adapter", default=None, help="LoRA adapter directory")
    ap.add_argument("--served-model-name", default=None, help="model id clients send (default: --model)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"])
    ap.add_argument("--device", default=None)
    ap.add_argument("--api-key", default=None, help="require this bearer token")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[serve] %(message)s")
    from daj.engines.hf import HFEngine

    try:
        engine = HFEngine(args.model, adapter=args.adapter, dtype=args.dtype, device=args.device, batch_size=1)
    except DajError as e:
        raise SystemExit(f"error: {e}") from None
    server = make_server(engine, args.served_model_name or args.model, args.host, args.port, args.api_key)
    print(f"serving {server.model_name} at {server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
