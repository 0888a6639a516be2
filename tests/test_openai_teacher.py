"""OpenAITeacher against a real chat-completions server on loopback (stdlib http.server in a thread)."""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from qponder import prompts
from qponder.errors import QPonderError
from qponder.models.answer import parse
from qponder.teachers.openai import OpenAITeacher

pytestmark = pytest.mark.timeout(30)


def _completion(text: str) -> dict:
    return {
        "id": "cmpl-1",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
    }


def _decode_image(body: dict) -> Image.Image:
    url = body["messages"][0]["content"][0]["image_url"]["url"]
    header, data = url.split(",", 1)
    assert header in ("data:image/jpeg;base64", "data:image/png;base64")
    return Image.open(io.BytesIO(base64.b64decode(data)))


def _score_for_width(width: int) -> float:
    return round(1 + (width % 17) * 0.25, 2)  # distinct for widths 10..19, always inside [1, 5]


def echo(req: "Recorded") -> tuple[int, dict, bytes]:
    """The default server: the score is a function of the image width, so answers can be matched to keys."""
    width = _decode_image(req.body).width
    score = _score_for_width(width)
    text = f"<think>The image is {width} pixels wide and looks fine.</think><answer>{score:.2f}</answer>"
    return 200, {}, json.dumps(_completion(text)).encode()


class Recorded:
    def __init__(self, index: int, path: str, headers: dict, body: dict):
        self.index, self.path, self.headers, self.body = index, path, headers, body


class FakeServer:
    """Records every request and answers with ``behaviour(request)``; tracks the peak of requests in flight."""

    def __init__(self):
        self.behaviour = echo
        self.requests: list[Recorded] = []
        self.in_flight = 0
        self.peak = 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with server.lock:
                    rec = Recorded(len(server.requests), self.path, dict(self.headers), json.loads(raw))
                    server.requests.append(rec)
                    server.in_flight += 1
                    server.peak = max(server.peak, server.in_flight)
                try:
                    status, headers, payload = server.behaviour(rec)
                finally:
                    with server.lock:
                        server.in_flight -= 1
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", headers.pop("Content-Type", "application/json"))
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout tests)
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    s = FakeServer()
    yield s
    s.close()


def teacher(server: FakeServer, **kw) -> OpenAITeacher:
    kw.setdefault("timeout", 2.0)
    kw.setdefault("backoff", 0.01)
    return OpenAITeacher(server.url, "qwen2.5-vl-72b", **kw)


def image(width: int = 64, height: int = 48) -> Image.Image:
    return Image.new("RGB", (width, height), (120, 80, 40))


def sequence(*behaviours):
    """Answer request i with behaviours[i] (the last one repeats)."""

    def behaviour(req):
        return behaviours[min(req.index, len(behaviours) - 1)](req)

    return behaviour


def status(code: int, body: dict | str, headers: dict | None = None):
    payload = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    return lambda req: (code, dict(headers or {}), payload)


def sleep_then(seconds: float, then=echo):
    def behaviour(req):
        time.sleep(seconds)
        return then(req)

    return behaviour


# -- prompts ------------------------------------------------------------------------------------------------------


def test_prompt_files_are_versioned_and_walk_through_the_attributes():
    assert prompts.version("teacher") == "1" and prompts.version("teacher_hint") == "1"
    text = prompts.load("teacher")
    for word in ("Sharpness", "Noise", "Compression", "Exposure", "Contrast", "Colour", "Content-aware", "dominant"):
        assert word in text
    assert "{hint}" in text and "<think></think>" in text and "<answer></answer>" in text
    assert "{mos:.2f}" in prompts.load("teacher_hint")


def test_hint_only_with_use_mos_hint_and_a_mos(server):
    plain = teacher(server).prompt(3.456)
    assert "3.46" not in plain and "{hint}" not in plain and "\n\n\n" not in plain
    hinted = teacher(server, use_mos_hint=True)
    assert "mean opinion score of 3.46" in hinted.prompt(3.456)
    assert "mean opinion score" not in hinted.prompt(None)  # unlabelled image: no hint, still a whole prompt


# -- a normal request ---------------------------------------------------------------------------------------------


def test_normal_request_body_and_answer(server):
    t = teacher(server, temperature=0.3, max_tokens=300, extra_body={"top_p": 0.9, "seed": 7})
    text = t.describe(image(30, 20), mos=4.2)
    assert parse(text).score == _score_for_width(30)
    (req,) = server.requests
    assert req.path == "/v1/chat/completions"
    body = req.body
    assert body["model"] == "qwen2.5-vl-72b"
    assert body["temperature"] == 0.3 and body["max_tokens"] == 300
    assert body["top_p"] == 0.9 and body["seed"] == 7
    (msg,) = body["messages"]
    assert msg["role"] == "user"
    assert [part["type"] for part in msg["content"]] == ["image_url", "text"]
    img = _decode_image(body)
    assert img.format == "JPEG" and img.size == (30, 20)
    prompt = msg["content"][1]["text"]
    assert "Sharpness and blur" in prompt and "dominant distortion" in prompt and "<answer></answer>" in prompt
    assert "4.20" not in prompt  # use_mos_hint is off
    assert "Authorization" not in req.headers  # vLLM needs no key


def test_mos_hint_in_request(server):
    teacher(server, use_mos_hint=True).describe(image(), mos=2.5)
    assert "mean opinion score of 2.50" in server.requests[0].body["messages"][0]["content"][1]["text"]


def test_downscale_and_png(server):
    t = teacher(server, max_side=100, image_format="png")
    t.describe(Image.new("RGBA", (400, 200), (1, 2, 3, 128)))
    img = _decode_image(server.requests[0].body)
    assert img.format == "PNG" and img.size == (100, 50)
    teacher(server, max_side=None).describe(image(400, 200))
    assert _decode_image(server.requests[1].body).size == (400, 200)
    teacher(server).describe(Image.new("L", (50, 40)))  # greyscale still goes out as a JPEG
    assert _decode_image(server.requests[2].body).size == (50, 40)


def test_authorization_header_from_env(server, monkeypatch):
    monkeypatch.setenv("MY_TEACHER_KEY", "sk-test-123")
    teacher(server, api_key_env="MY_TEACHER_KEY").describe(image())
    assert server.requests[0].headers["Authorization"] == "Bearer sk-test-123"


# -- retries ------------------------------------------------------------------------------------------------------


def test_timeout_then_success(server):
    server.behaviour = sequence(sleep_then(0.8), echo)
    t = teacher(server, timeout=0.2, retries=2)
    assert parse(t.describe(image(14, 10))).score == _score_for_width(14)
    assert len(server.requests) == 2


def test_always_times_out(server):
    server.behaviour = sleep_then(0.8)
    t = teacher(server, timeout=0.15, retries=2)
    start = time.monotonic()
    with pytest.raises(QPonderError) as err:
        t.describe(image())
    assert time.monotonic() - start < 2.0
    msg = str(err.value)
    assert "timed out after 0.15s" in msg and "3 attempts" in msg and server.url in msg and "\n" not in msg
    assert len(server.requests) == 3


def test_500_then_success(server):
    server.behaviour = sequence(status(500, {"error": {"message": "CUDA out of memory"}}), echo)
    assert parse(teacher(server).describe(image(18, 10))).score == _score_for_width(18)
    assert len(server.requests) == 2


def test_429_honours_retry_after(server):
    server.behaviour = sequence(status(429, {"message": "slow down"}, {"Retry-After": "0"}), echo)
    t = teacher(server, backoff=30.0)  # the server's Retry-After, not our backoff, sets the wait
    start = time.monotonic()
    assert parse(t.describe(image())).ok
    assert time.monotonic() - start < 5.0 and len(server.requests) == 2


def test_persistent_503_gives_up(server):
    server.behaviour = status(503, {"object": "error", "message": "model is loading"})
    with pytest.raises(QPonderError, match=r"HTTP 503: model is loading \(2 attempts\)"):
        teacher(server, retries=1).describe(image())


def test_400_is_not_retried(server):
    server.behaviour = status(400, {"object": "error", "message": "This model's maximum context length is 4096 tokens"})
    with pytest.raises(QPonderError) as err:
        teacher(server, retries=3).describe(image())
    msg = str(err.value)
    assert "HTTP 400" in msg and "maximum context length is 4096" in msg and server.url in msg
    assert len(server.requests) == 1


def test_404_with_plain_text_body(server):
    server.behaviour = status(404, "Not Found\n", {"Content-Type": "text/plain"})
    with pytest.raises(QPonderError, match=r"HTTP 404: Not Found"):
        teacher(server).describe(image())
    assert len(server.requests) == 1


def test_malformed_json_once_is_retried(server):
    server.behaviour = sequence(status(200, "{not json"), echo)
    assert parse(teacher(server).describe(image())).ok
    assert len(server.requests) == 2


def test_malformed_json_always(server):
    server.behaviour = status(200, "<html>gateway</html>", {"Content-Type": "text/html"})
    with pytest.raises(QPonderError) as err:
        teacher(server, retries=5).describe(image())
    msg = str(err.value)
    assert "not JSON" in msg and "gateway" in msg and server.url in msg
    assert len(server.requests) == 3  # garbage is retried only twice, however many retries are allowed


def test_missing_choices(server):
    server.behaviour = status(200, {"id": "x", "object": "chat.completion"})
    with pytest.raises(QPonderError, match=r"no choices\[0\]\.message\.content.*id, object"):
        teacher(server, retries=1).describe(image())
    assert len(server.requests) == 2


def test_null_content(server):
    server.behaviour = status(200, _completion(None))
    with pytest.raises(QPonderError, match="NoneType, not text"):
        teacher(server, retries=0).describe(image())


def test_connection_refused(server):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    t = OpenAITeacher(f"http://127.0.0.1:{port}/v1", "m", retries=1, backoff=0.01, timeout=1.0)
    with pytest.raises(QPonderError, match=rf"127\.0\.0\.1:{port}/v1/chat/completions: cannot connect.*2 attempts"):
        t.describe(image())


def test_bad_settings():
    with pytest.raises(QPonderError, match="base_url"):
        OpenAITeacher("localhost:8000/v1", "m")
    with pytest.raises(QPonderError, match="image_format"):
        OpenAITeacher("http://h/v1", "m", image_format="webp")
    with pytest.raises(QPonderError, match="concurrency"):
        OpenAITeacher("http://h/v1", "m", concurrency=0)


# -- describe_many ------------------------------------------------------------------------------------------------


def test_describe_many_maps_keys_and_bounds_concurrency(server):
    server.behaviour = sleep_then(0.1)  # long enough that requests overlap even on a busy machine
    items = [(f"img{i:02d}", image(10 + i, 10), 1.0 + i / 10) for i in range(10)]
    got = {}
    for key, text, error in teacher(server, concurrency=3).describe_many(items):
        assert error is None and key not in got
        got[key] = parse(text).score
    assert got == {f"img{i:02d}": _score_for_width(10 + i) for i in range(10)}
    assert len(server.requests) == 10
    assert 2 <= server.peak <= 3  # really concurrent, never more than asked


def test_describe_many_one_bad_item(server):
    def behaviour(req):
        if _decode_image(req.body).width == 13:
            return status(400, {"error": {"message": "image too small"}})(req)
        return echo(req)

    server.behaviour = behaviour
    buf = io.BytesIO()
    Image.effect_noise((64, 64), 50).convert("RGB").save(buf, format="JPEG")
    # A truncated file opens lazily and only fails when decoded: in the worker, not in the caller.
    broken = Image.open(io.BytesIO(buf.getvalue()[: len(buf.getvalue()) // 2]))
    items = [(i, image(10 + i, 10), None) for i in range(6)] + [("broken", broken, None)]
    results = {key: (text, error) for key, text, error in teacher(server, concurrency=2).describe_many(items)}
    assert set(results) == {0, 1, 2, 3, 4, 5, "broken"}
    text, error = results[3]
    assert text is None and "HTTP 400: image too small" in error
    assert results["broken"][0] is None and results["broken"][1]
    for i in (0, 1, 2, 4, 5):
        assert results[i][1] is None and parse(results[i][0]).score == _score_for_width(10 + i)


def test_describe_many_pulls_items_lazily(server):
    pulled = []

    def items():
        for i in range(100):
            pulled.append(i)
            yield i, image(), None

    gen = teacher(server, concurrency=2).describe_many(items())
    next(gen)
    gen.close()
    assert len(pulled) <= 4  # a huge dataset is never read ahead of the requests
