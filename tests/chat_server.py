"""A real chat-completions HTTP server on a loopback port, scripted by the text of each request.

Used by the extraction tests (in a thread) and by bench/extract_throughput.py (as a separate process:
``python tests/chat_server.py --latency-ms 50`` prints its port). It speaks enough of the OpenAI protocol for
the openai client: POST /v1/chat/completions -> {"choices": [{"message": {"content": ...}}], ...}.

What it answers depends on a directive in the last user message:
- ``[[malformed]]`` -> text that holds no JSON; ``[[fenced]]`` -> ```json fenced labels with prose and a
  trailing comma; ``[[429]]`` -> HTTP 429 on the first request for that text, then a good answer;
  ``[[500]]`` -> HTTP 500 every time; ``[[slow]]`` -> a good answer after ``slow_s`` (beyond the client's
  timeout); ``[[drop]]`` -> closes the connection without answering; ``[[audio]]`` checks an input_audio part.
- anything else: ``{"labels": [...]}`` with the alphabetic words of the caption (lowercased, in order, the
  first six), after ``latency_s``.
With ``reject_json_mode`` the server answers 400 to requests that ask for response_format (like servers
without guided decoding), so the client must fall back to plain text.

For the multi-server tests and bench/extract_multi_server.py: ``GET /v1/models`` answers as servers do (the
client's health check); ``die()`` makes the server really go away (it stops listening and resets every open
connection, in-flight requests unanswered); ``die_after=N`` does that by itself once N requests were answered;
``answered`` counts the 200 answers written. As a process: ``--die-after N`` exits after N answers.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import socket
import struct
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CAPTION_MARK = "Description of the audio clip:\n"


def caption_of(messages: list[dict]) -> str:
    content = messages[-1]["content"]
    if isinstance(content, list):
        content = " ".join(part.get("text", "") for part in content if part.get("type") == "text")
    if CAPTION_MARK in content:
        content = content.split(CAPTION_MARK, 1)[1].split("\n\nAnswer with", 1)[0]
    return content


def labels_for(caption: str) -> list[str]:
    words = [w.lower() for w in re.findall(r"[A-Za-z]+", caption)]
    return words[:6]


class ScriptedChatServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, latency_s: float = 0.0, slow_s: float = 5.0, reject_json_mode: bool = False,
                 answer_limit: int | None = None, die_after: int | None = None, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        # die(): after ``die_after`` answers (None: never by itself); ``died`` is set once it is gone.
        self.die_after = die_after
        self.answered = 0
        self.dead = False
        self.died = threading.Event()
        self._connections: set[socket.socket] = set()
        self.latency_s = latency_s
        # Requests past the first ``answer_limit`` are held unanswered until stop(): a job then cannot finish,
        # so a test can kill it mid-way without racing it.
        self.answer_limit = answer_limit
        self.release = threading.Event()
        self.slow_s = slow_s
        self.reject_json_mode = reject_json_mode
        self.requests_by_caption: Counter[str] = Counter()
        self.json_mode_requests = 0
        self.audio_parts = 0
        self.lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def process_request(self, request, client_address) -> None:
        with self.lock:
            if self.dead:
                self.shutdown_request(request)
                return
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:
        with self.lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def count_answer(self) -> None:
        """One more 200 answer written; the ``die_after``-th one makes the server die (in another thread: the
        handler that wrote it must not wait for itself)."""
        with self.lock:
            self.answered += 1
            dies = self.die_after is not None and self.answered >= self.die_after and not self.dead
        if dies:
            threading.Thread(target=self.die, daemon=True).start()

    def die(self) -> None:
        """Stop listening and reset every open connection: new requests are refused, in-flight ones and kept-alive
        connections get a reset, no answer goes out any more (like a server process that was killed)."""
        with self.lock:
            self.dead = True
            connections = list(self._connections)
        self.release.set()
        if self._thread is not None:
            self.shutdown()
        self.server_close()
        for connection in connections:
            try:
                # SO_LINGER 0: close sends a reset at once, as the kernel does for a killed process.
                connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.died.set()

    def handle_error(self, request, client_address) -> None:
        # A client that gave up (timeout) closes its socket before the answer: expected here, not an error.
        pass

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def start(self) -> "ScriptedChatServer":
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        if not self.dead:
            self.shutdown()
            self.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers: the client reuses its connections

    def log_message(self, *args) -> None:  # quiet
        pass

    def _send(self, status: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # http.server's naming
        if self.server.dead:  # type: ignore[attr-defined]
            self.close_connection = True
            return
        if self.path.endswith("/models"):
            self._send(200, {"object": "list", "data": [{"id": "scripted", "object": "model"}]})
        else:
            self._send(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        server: ScriptedChatServer = self.server  # type: ignore[assignment]
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        if server.dead:
            self.close_connection = True
            return
        if not self.path.endswith("/chat/completions"):
            self._send(404, {"error": {"message": f"no route {self.path}"}})
            return
        caption = caption_of(body["messages"])
        with server.lock:
            server.requests_by_caption[caption] += 1
            seen = server.requests_by_caption[caption]
            if "response_format" in body:
                server.json_mode_requests += 1
            held = server.answer_limit is not None and sum(server.requests_by_caption.values()) > server.answer_limit
        if held:
            server.release.wait()
            self.close_connection = True
            return
        if "response_format" in body and server.reject_json_mode:
            self._send(400, {"error": {"message": "response_format is not supported by this server",
                                       "type": "invalid_request_error"}})
            return
        if "[[drop]]" in caption:
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if "[[500]]" in caption:
            self._send(500, {"error": {"message": "internal error (scripted)"}})
            return
        if "[[429]]" in caption and seen == 1:
            self.send_response(429)
            self.send_header("Retry-After", "0")
            self.send_header("Content-Type", "application/json")
            payload = json.dumps({"error": {"message": "rate limited (scripted)"}}).encode()
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        time.sleep(server.slow_s if "[[slow]]" in caption else server.latency_s)
        if "[[audio]]" in caption or any(isinstance(m["content"], list) for m in body["messages"]):
            parts = [p for m in body["messages"] if isinstance(m["content"], list) for p in m["content"]]
            audio = [p for p in parts if p.get("type") == "input_audio"]
            with server.lock:
                server.audio_parts += len(audio)
            size = len(audio[0]["input_audio"]["data"]) if audio else 0
            content = (f"A sound of {size} base64 characters. In summary, a test clip." if audio
                       else "no audio received")
        elif "[[malformed]]" in caption:
            content = "I think this clip has a dog in it, labels are dog and bark."
        elif "[[fenced]]" in caption:
            content = ('Here are the labels:\n```json\n{"labels": ["Fenced", "dog_bark", 7, "fenced",]}\n```\n'
                       "Hope this helps!")
        else:
            content = json.dumps({"labels": labels_for(caption)})
        if server.dead:  # died while this request waited: a dead server answers nothing
            self.close_connection = True
            return
        self._send(200, {
            "id": f"chatcmpl-{seen}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", "scripted"),
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        })
        server.count_answer()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--die-after", type=int, help="exit (the process ends) after this many answers")
    args = parser.parse_args()
    server = ScriptedChatServer(latency_s=args.latency_ms / 1000, die_after=args.die_after)
    print(server.server_address[1], flush=True)
    if args.die_after is None:
        server.serve_forever()
        return
    server.start()
    server.died.wait()
    os._exit(0)  # the process ends: its sockets are closed by the kernel


if __name__ == "__main__":
    main()
