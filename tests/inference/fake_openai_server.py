"""A small OpenAI-compatible chat server in pure Python (threads, 127.0.0.1) that misbehaves the
ways a real server and its connections do, for the client's transport tests.

It answers GET /health, GET /v1/models (a base model and `adapters`) and
POST /v1/chat/completions (the text `reply`; streamed as server-sent events, one chunk per
character, when the request says stream), keeps connections alive (HTTP/1.1), and:
    idle_timeout_s: closes a kept-alive connection idle this long (uvicorn does after 5 s);
    reset_every: every n-th new chat request is read, then its connection reset (RST: the client
        sees "[Errno 104] Connection reset by peer"), without an answer;
    close_every: every n-th new chat request is read, then its connection closed without an answer;
        a request sent again (the same body) is answered, so faults are transient, as a
        keep-alive race is, and a client's bounded retries always get through;
    persistent: counts every request read, resends too, so reset_every=1 resets them all;
    body: "json"; "not_json" (every answer is an HTML page); "no_choices" (chat answers JSON
        without choices);
    fail_after: chat requests after this many answers get 500;
    delay_s: each chat answer waits this long (requests then overlap, as on a real server);
    owned_by: what /v1/models says owns the models (vLLM says "vllm"; others say other things).

    with FakeOpenAIServer(reset_every=3) as fake:
        VLLMServerBackend(fake.url).chat([...])
    fake.answered, fake.resets
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal


class FakeOpenAIServer:
    def __init__(self, *, reply: str = "Yes", adapters: tuple[str, ...] = (), idle_timeout_s: float | None = None,
                 reset_every: int = 0, close_every: int = 0, persistent: bool = False,
                 body: Literal["json", "not_json", "no_choices"] = "json", fail_after: int | None = None,
                 delay_s: float = 0.0, owned_by: str = "fake") -> None:
        self.reply, self.adapters, self.body, self.fail_after = reply, adapters, body, fail_after
        self.reset_every, self.close_every, self.persistent = reset_every, close_every, persistent
        self.delay_s, self.owned_by = delay_s, owned_by
        self.authorization: set[str] = set()  # the Authorization headers chat requests carried
        self.chats = 0                      # chat requests read
        self._seen: set[str] = set()        # bodies of chat requests read, to tell a resend
        self.answered = 0                   # chat requests answered 200
        self.resets = self.closes = 0
        self.prompts: list[str] = []        # the text of each answered chat request
        self.payloads: list[dict] = []      # each answered chat request's body
        self._lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"fake": self, "timeout": idle_timeout_s})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> FakeOpenAIServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def next_action(self, payload: dict[str, Any]) -> str:
        """What to do with a chat request just read: answer, reset, close or fail."""
        body = json.dumps(payload, sort_keys=True)
        with self._lock:
            self.chats += 1
            new = self.persistent or body not in self._seen
            self._seen.add(body)
            n = self.chats if self.persistent else len(self._seen)
            if new and self.reset_every and n % self.reset_every == 0:
                self.resets += 1
                return "reset"
            if new and self.close_every and n % self.close_every == 0:
                self.closes += 1
                return "close"
            if self.fail_after is not None and self.answered >= self.fail_after:
                return "fail"
            self.answered += 1
            self.prompts.append(payload["messages"][0]["content"][-1]["text"])
            self.payloads.append(payload)
            return "answer"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as uvicorn
    fake: FakeOpenAIServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.fake.body == "not_json":
            self._send(200, b"<html><body>It works!\n</body></html>", "text/html")
        elif self.path == "/health":
            self._send(200, b"")
        elif self.path == "/v1/models":
            owner = self.fake.owned_by
            base = [{"id": "fake-base", "object": "model", "owned_by": owner, "parent": None}]
            self._json(200, {"object": "list", "data": base + [
                {"id": name, "object": "model", "owned_by": owner, "parent": "fake-base"}
                for name in self.fake.adapters]})
        else:
            self._json(404, {"error": {"message": "Not Found"}})

    def do_POST(self) -> None:
        payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path != "/v1/chat/completions":
            return self._json(404, {"error": {"message": "Not Found"}})
        self.fake.authorization.add(self.headers.get("Authorization", ""))
        action = self.fake.next_action(payload)
        if action == "answer" and self.fake.delay_s:
            time.sleep(self.fake.delay_s)
        if action == "reset":
            self._reset()
        elif action == "close":
            self.close_connection = True  # the server's FIN, no answer
        elif action == "fail":
            self._json(500, {"error": {"message": "engine died"}})
        elif self.fake.body == "not_json":
            self._send(200, b"<html>It works!</html>", "text/html")
        elif payload.get("stream"):
            self._stream(payload["model"])
        elif self.fake.body == "no_choices":
            self._json(200, {"id": "x", "object": "chat.completion"})
        else:
            self._json(200, {"id": "chatcmpl-fake", "object": "chat.completion", "model": payload["model"],
                             "choices": [{"index": 0, "message": {"role": "assistant", "content": self.fake.reply},
                                          "finish_reason": "stop", "token_ids": [1]}],
                             "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})

    def _stream(self, model: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        pieces = [{"content": c} for c in self.fake.reply] + [{}]
        for i, delta in enumerate(pieces):
            chunk = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": model,
                     "choices": [{"index": 0, "delta": delta, "finish_reason": "stop" if not delta else None}]}
            self._chunk(f"data: {json.dumps(chunk)}\n\n".encode())
        self._chunk(b"data: [DONE]\n\n")
        self._chunk(b"")

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _reset(self) -> None:
        # SO_LINGER 0 turns close() into a RST; rfile holds the socket open until it is closed too.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.rfile.close()
        self.connection.close()
        self.close_connection = True

    def _json(self, status: int, data: dict[str, Any]) -> None:
        self._send(status, json.dumps(data).encode(), "application/json")

    def _send(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
