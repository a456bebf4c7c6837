"""A small OpenAI-compatible server (/v1/chat/completions, /v1/models) on top of the hf engine.

    python -m daj.testing.openai_server --model models/tiny [--adapter models/judge] [--port 8000]
    python -m daj.testing.openai_server --model models/tiny --served-model-name tiny \
        --enable-lora --lora-modules judge=models/judge [other=DIR ...]

It reads the same sampling fields as vLLM's server (n, temperature, top_p, top_k,
repetition_penalty, max_tokens / max_completion_tokens, seed) and vLLM's prefix convention
(`continue_final_message` with a final assistant message). Requests are served one at a time by
the model (a lock), while connections are handled in threads. An optional API key is checked when
the server is started with one. Meant for tests and small local runs, not production.

LoRA the vLLM way: `--lora-modules NAME=PATH` serves the base model under its name and each adapter
under NAME on the same weights (a request's `model` picks one; /v1/models lists them all). With
`--enable-lora`, adapters can also be added and removed at run time: POST /v1/load_lora_adapter
{"lora_name", "lora_path"} and /v1/unload_lora_adapter {"lora_name"} (vLLM needs
VLLM_ALLOW_RUNTIME_LORA_UPDATING=True for these).
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
DTYPES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}  # vLLM's spellings


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

    def __init__(self, address: tuple[str, int], engine, model_name: str, api_key: str | None = None,
                 lora_modules: dict[str, str] | None = None, enable_lora: bool = False):
        super().__init__(address, Handler)
        self.engine, self.model_name, self.api_key = engine, model_name, api_key
        self.enable_lora = enable_lora or bool(lora_modules)
        self.lock = threading.Lock()
        # the base name keeps an adapter given at load time (--adapter, PEFT's "default"); else no adapter
        self.base_adapter = "default" if "default" in (getattr(engine.model, "peft_config", None) or {}) else None
        self.loras: dict[str, str] = {}
        for name, path in (lora_modules or {}).items():
            self.load_lora(name, path)

    def load_lora(self, name: str, path: str) -> None:
        """Serve adapter `path` under `name` (an error if the name is taken)."""
        if not name or name == self.model_name or name in self.loras:
            raise DajError(f"the name {name!r} is already served", field="lora_name")
        with self.lock:
            self.engine.load_adapter(name, path)
        self.loras[name] = path

    def unload_lora(self, name: str) -> None:
        if name not in self.loras:
            raise DajError(f"no LoRA adapter named {name!r} is served", field="lora_name")
        with self.lock:
            self.engine.unload_adapter(name)
        del self.loras[name]

    def served(self) -> list[dict]:
        """The /v1/models entries: the base, then each adapter with the base as its parent."""
        base = {"id": self.model_name, "object": "model", "created": 0, "owned_by": "daj", "root": self.model_name,
                "parent": None}
        return [base] + [{**base, "id": n, "root": p, "parent": self.model_name} for n, p in self.loras.items()]

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
            self._send(200, {"object": "list", "data": self.server.served()})
        else:
            self._error(404, f"no route {self.path}")

    def _body(self) -> dict:
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length).decode("utf-8"))
        if not isinstance(body, dict):
            raise DajError("the request body must be a JSON object")
        return body

    def _lora_route(self, route: str) -> None:
        """vLLM's runtime adapter routes: 200 with a plain-text message, 400 with an error object."""
        if not self.server.enable_lora:
            self._error(400, "runtime LoRA updating is off (start the server with --enable-lora)")
            return
        try:
            body = self._body()
            name = body.get("lora_name")
            if not isinstance(name, str) or not name:
                raise DajError("'lora_name' must be a non-empty string", field="lora_name")
            if route == "load_lora_adapter":
                path = body.get("lora_path")
                if not isinstance(path, str) or not path:
                    raise DajError("'lora_path' must be a non-empty string", field="lora_path")
                self.server.load_lora(name, path)
                message = f"Success: LoRA adapter '{name}' added successfully."
            else:
                self.server.unload_lora(name)
                message = f"Success: LoRA adapter '{name}' removed successfully."
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as e:
            self._error(400, f"invalid JSON: {e}")
            return
        except DajError as e:
            self._error(400, str(e))
            return
        data = message.encode("utf-8")
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # noqa: N802
        if not self._authorised():
            return
        route = self.path.rstrip("/")
        if route in ("/v1/load_lora_adapter", "/v1/unload_lora_adapter"):
            self._lora_route(route.rsplit("/", 1)[1])
            return
        if route != "/v1/chat/completions":
            self._error(404, f"no route {self.path}")
            return
        try:
            body = self._body()
            if body.get("stream"):
                raise DajError("streaming is not supported", field="stream")
            model = body.get("model")
            if model not in (None, self.server.model_name) and model not in self.server.loras:
                self._error(404, f"model {model!r} is not served here "
                                 f"(serving {', '.join(repr(m['id']) for m in self.server.served())})")
                return
            chat, prefix = _parse_messages(body)
            params = from_openai(body)
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as e:
            self._error(400, f"invalid JSON: {e}")
            return
        except DajError as e:
            self._error(400, str(e))
            return
        adapter = model if model in self.server.loras else self.server.base_adapter
        with self.server.lock:
            if not self.server.loras:  # one model: no adapter switching (engines without PEFT too)
                comps = self.server.engine.generate([chat], params, [prefix] if prefix is not None else None)[0]
            else:
                with self.server.engine.using_adapter(adapter):
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
                api_key: str | None = None, lora_modules: dict[str, str] | None = None,
                enable_lora: bool = False) -> ChatServer:
    """A ready-to-serve server (port 0 picks a free port; see `.url`).

    `lora_modules` {name: adapter dir} are served on the engine's base weights under their names
    (the engine needs load_adapter / using_adapter, as HFEngine has); `enable_lora` also allows the
    runtime load/unload routes.
    """
    return ChatServer((host, port), engine, model_name, api_key, lora_modules, enable_lora)


def parse_lora_modules(values: list[str]) -> dict[str, str]:
    """vLLM's `--lora-modules` values: `name=path` or a JSON object {"name", "path"}."""
    out: dict[str, str] = {}
    for value in values:
        if value.lstrip().startswith("{"):
            try:
                obj = json.loads(value)
                name, path = obj["name"], obj["path"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise DajError(f"expected name=path or {{\"name\": ..., \"path\": ...}}, got {value!r}",
                               field="--lora-modules") from None
        else:
            name, sep, path = value.partition("=")
            if not sep or not name or not path:
                raise DajError(f"expected name=path, got {value!r}", field="--lora-modules")
        if name in out:
            raise DajError(f"LoRA module {name!r} given twice", field="--lora-modules")
        out[name] = path
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_ref", nargs="?", default=None, metavar="MODEL", help="the model, as `vllm serve MODEL`")
    ap.add_argument("--model", default=None, help="model reference (path, hub id, gguf:<pkg>:<file>)")
    ap.add_argument("--adapter", default=None, help="LoRA adapter directory")
    ap.add_argument("--served-model-name", default=None, help="model id clients send (default: --model)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    ap.add_argument("--dtype", default="fp32", choices=[*DTYPES, "fp32", "bf16", "fp16"])
    ap.add_argument("--device", default=None)
    ap.add_argument("--api-key", default=None, help="require this bearer token")
    ap.add_argument("--enable-lora", action="store_true", help="allow /v1/load_lora_adapter and unload at run time")
    ap.add_argument("--lora-modules", nargs="+", default=[], metavar="NAME=PATH",
                    help="adapters served under NAME on the base weights (vLLM's syntax)")
    # accepted so that the `vllm serve` line of daj.engines.vllm_engine runs here too
    ap.add_argument("--max-lora-rank", type=int, default=None, help="refuse adapters of a higher rank (vLLM)")
    ap.add_argument("--tokenizer", default=None, help="ignored: the tokenizer comes with the model reference")
    ap.add_argument("--max-model-len", type=int, default=None, help="ignored (vLLM's context limit)")
    ap.add_argument("--gpu-memory-utilization", type=float, default=None, help="ignored (vLLM)")
    args = ap.parse_args(argv)
    model = args.model or args.model_ref
    if not model or (args.model and args.model_ref and args.model != args.model_ref):
        ap.error("give the model once: `serve MODEL` or `--model MODEL`")
    logging.basicConfig(level=logging.INFO, format="[serve] %(message)s")
    from daj.engines.hf import HFEngine
    from daj.engines.vllm_engine import adapter_rank

    try:
        loras = parse_lora_modules(args.lora_modules)
        for name, path in loras.items():
            rank = adapter_rank(path)
            if args.max_lora_rank is not None and rank is not None and rank > args.max_lora_rank:
                raise DajError(f"adapter {name!r} has rank {rank} > --max-lora-rank {args.max_lora_rank}",
                               field="--max-lora-rank")
        engine = HFEngine(model, adapter=args.adapter, dtype=DTYPES.get(args.dtype, args.dtype), device=args.device,
                          batch_size=1, merge_adapter=not (loras or args.enable_lora))
        server = make_server(engine, args.served_model_name or model, args.host, args.port, args.api_key,
                             loras, args.enable_lora)
    except DajError as e:
        raise SystemExit(f"error: {e}") from None
    print(f"serving {server.model_name} at {server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
