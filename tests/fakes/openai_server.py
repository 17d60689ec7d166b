"""A small fake OpenAI-compatible server on 127.0.0.1, for driving the real ``openai`` client in tests.

``POST /v1/chat/completions`` only. Replies are deterministic, derived from the last user message
(:func:`reply_for`); every reply carries a ``usage`` block (:func:`usage_for`). ``"stream": true`` answers with
SSE ``data:`` chunks (``choices[0].delta.content``), a final usage chunk when
``stream_options.include_usage`` is set, then ``data: [DONE]``. A last user message containing ``FAIL`` is
answered with HTTP 500 and an OpenAI-style error body.

Tools: when the request offers a function tool named :data:`TOOL_NAME` and the last user message asks about the
weather (:data:`TOOL_TRIGGER`) with no tool result after it, the answer is one call of that tool with
:data:`TOOL_ARGUMENTS` (``finish_reason`` ``tool_calls``; streamed as ``delta.tool_calls`` pieces when
``"stream": true``). Once the tool results follow the user message, the answer is :func:`reply_after_tools`.
Every answer is kept in :attr:`FakeOpenAI.exchanges` (request, status, usage, reply or tool calls).

    with FakeOpenAI() as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0)

A test fake: stdlib ``http.server`` in a thread, one thread per connection, HTTP/1.1 keep-alive, chunked
transfer encoding for streams.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FAIL_MARKER = "FAIL"
TOOL_NAME = "get_weather"
TOOL_TRIGGER = "weather"
TOOL_ARGUMENTS = {"city": "Paris"}
CREATED = 1_700_000_000
# The model the fake says answered, whatever was asked for (a real API answers with a dated snapshot name).
RESPONSE_MODEL_SUFFIX = "-2024-fake"


def _text(content: Any) -> str:
    """A message's content as text: a string, or the text parts of a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def last_user_message(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return _text(message.get("content"))
    return ""


def reply_for(user_message: str) -> str:
    """The fake's deterministic answer to a user message."""
    return f"Fake reply to <{user_message}>: {len(user_message)} characters received."


def reply_after_tools(user_message: str, tool_results: list[str]) -> str:
    """The fake's answer once the results of the tools it called follow the user message."""
    return f"Fake reply to <{user_message}> after the tool said <{' | '.join(tool_results)}>."


def tool_call_id(request_number: int) -> str:
    return f"call_fake{request_number:06d}"


def pending_tool_results(messages: list[dict[str, Any]]) -> list[str] | None:
    """The contents of the tool messages after the last user message, or None when there are none."""
    results: list[str] = []
    for message in reversed(messages):
        role = message.get("role")
        if role == "user":
            break
        if role == "tool":
            results.insert(0, _text(message.get("content")))
    return results or None


def offers_tool(body: dict[str, Any]) -> bool:
    return any(isinstance(t, dict) and (t.get("function") or {}).get("name") == TOOL_NAME
               for t in body.get("tools") or [])


def count_tokens(text: str) -> int:
    """The fake's 'tokenizer': whitespace-separated words."""
    return len(text.split())


def usage_for(messages: list[dict[str, Any]], reply: str) -> dict[str, int]:
    """Prompt tokens = words in all messages (so they grow with the history); completion = words of the reply."""
    prompt = sum(count_tokens(_text(m.get("content"))) for m in messages) + 3 * len(messages)
    completion = count_tokens(reply)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def response_model(requested: str) -> str:
    return requested + RESPONSE_MODEL_SUFFIX


def stream_pieces(reply: str) -> list[str]:
    """How a streamed reply is cut: word by word, spaces kept, so the pieces join back to the reply."""
    words = reply.split(" ")
    return [w if i == len(words) - 1 else w + " " for i, w in enumerate(words)]


@dataclass
class Exchange:
    """One chat-completion request and what the fake answered."""

    request: dict[str, Any]
    status: int
    user: str  # the last user message
    stream: bool = False
    reply: str | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, int] | None = None  # None: none was sent (a failure, or a stream without include_usage)


class _Handler(BaseHTTPRequestHandler):
    disable_nagle_algorithm = True  # TCP_NODELAY: headers and body go in separate writes (else ~40 ms a reply)
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send_json(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_POST(self) -> None:
        raw = self._body()
        if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
            self._send_json(404, {"error": {"message": f"no route {self.path}", "type": "invalid_request_error"}})
            return
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self._send_json(400, {"error": {"message": "body is not JSON", "type": "invalid_request_error"}})
            return
        with self.server.lock:
            self.server.requests.append(body)
            number = len(self.server.requests)
        messages = body.get("messages") or []
        user = last_user_message(messages)
        stream = bool(body.get("stream"))
        exchange = Exchange(request=body, status=200, user=user, stream=stream)
        if FAIL_MARKER in user:
            exchange.status = 500
            self._record(exchange)
            self._send_json(500, {"error": {"message": "The fake server failed on purpose.", "type": "server_error",
                                            "code": "fake_failure"}})
            return
        model = str(body.get("model") or "fake-model") + self.server.model_suffix
        results = pending_tool_results(messages)
        if results is None and TOOL_TRIGGER in user.lower() and offers_tool(body):
            arguments = json.dumps(TOOL_ARGUMENTS)
            exchange.tool_calls = [{"id": tool_call_id(number), "type": "function",
                                    "function": {"name": TOOL_NAME, "arguments": arguments}}]
            usage = usage_for(messages, f"{TOOL_NAME} {arguments}")
        else:
            if results is not None:
                exchange.reply = reply_after_tools(user, results)
            elif self.server.replier is not None:
                exchange.reply = self.server.replier(messages)
            else:
                exchange.reply = reply_for(user)
            usage = usage_for(messages, exchange.reply)
        completion_id = f"chatcmpl-fake{number:06d}"
        if stream:
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            exchange.usage = usage if include_usage else None
            self._record(exchange)
            self._stream(completion_id, model, exchange, exchange.usage)
            return
        exchange.usage = usage
        self._record(exchange)
        message: dict[str, Any] = {"role": "assistant", "content": exchange.reply, "refusal": None}
        if exchange.tool_calls:
            message["tool_calls"] = exchange.tool_calls
        self._send_json(200, {
            "id": completion_id, "object": "chat.completion", "created": CREATED, "model": model,
            "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": "tool_calls" if exchange.tool_calls else "stop"}],
            "usage": usage,
        })

    def _record(self, exchange: Exchange) -> None:
        with self.server.lock:
            self.server.exchanges.append(exchange)

    def _stream(self, completion_id: str, model: str, exchange: Exchange, usage: dict[str, int] | None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def chunk(choices: list[dict[str, Any]], extra: dict[str, Any] | None = None) -> dict[str, Any]:
            return {"id": completion_id, "object": "chat.completion.chunk", "created": CREATED, "model": model,
                    "system_fingerprint": "fp_fake", "choices": choices, **(extra or {})}

        events: list[dict[str, Any]] = [
            chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])]
        if exchange.reply is not None:
            events += [chunk([{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
                       for piece in stream_pieces(exchange.reply)]
        for index, call in enumerate(exchange.tool_calls):
            arguments = call["function"]["arguments"]
            events.append(chunk([{"index": 0, "delta": {"tool_calls": [{
                "index": index, "id": call["id"], "type": "function",
                "function": {"name": call["function"]["name"], "arguments": ""}}]}, "finish_reason": None}]))
            events += [chunk([{"index": 0, "finish_reason": None,
                               "delta": {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}}])
                       for piece in stream_pieces(arguments)]
        finish = "tool_calls" if exchange.tool_calls else "stop"
        events.append(chunk([{"index": 0, "delta": {}, "finish_reason": finish}]))
        if usage is not None:
            events.append(chunk([], {"usage": usage}))
        for payload in [f"data: {json.dumps(e)}\n\n" for e in events] + ["data: [DONE]\n\n"]:
            data = payload.encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    requests: list[dict[str, Any]]
    model_suffix: str
    replier: Callable[[list[dict[str, Any]]], str] | None
    exchanges: list[Exchange]
    lock: threading.Lock


class FakeOpenAI:
    """The fake server, started on a free 127.0.0.1 port on ``__enter__`` (or ``start()``)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, model_suffix: str = RESPONSE_MODEL_SUFFIX,
                 replier: Callable[[list[dict[str, Any]]], str] | None = None) -> None:
        """``model_suffix``: appended to the requested model in the answer; ``replier``: the reply text for the
        request's messages (default :func:`reply_for` of the last user message)."""
        self._server = _Server((host, port), _Handler)
        self._server.requests = []
        self._server.model_suffix = model_suffix
        self._server.replier = replier
        self._server.exchanges = []
        self._server.lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else str(host)
        return f"http://{name}:{port}/v1"

    @property
    def requests(self) -> list[dict[str, Any]]:
        """The JSON bodies of the chat-completion requests received, in order."""
        return self._server.requests

    @property
    def exchanges(self) -> list[Exchange]:
        """Every request with what the fake answered, in the order they were answered."""
        return self._server.exchanges

    def start(self) -> FakeOpenAI:
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-openai", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(host: str = "127.0.0.1", port: int = 0) -> Iterator[FakeOpenAI]:
    """A generator fixture body: ``yield from serve()``."""
    with FakeOpenAI(host, port) as server:
        yield server


if __name__ == "__main__":  # python -m tests.fakes.openai_server: run one in the foreground
    import time

    with FakeOpenAI() as fake:
        print(fake.base_url, flush=True)
        while True:
            time.sleep(3600)
