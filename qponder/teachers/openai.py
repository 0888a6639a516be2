"""A teacher behind any OpenAI-compatible chat-completions server that takes images (vLLM, SGLang, LMDeploy,
Ollama, hosted APIs).

Only the stdlib is used for HTTP: the protocol is one JSON POST, and a client library would be one more pin
for a path that the training stack never needs.
"""

from __future__ import annotations

import base64
import concurrent.futures as cf
import http.client
import io
import json
import os
import random
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from typing import Any, Hashable, TypeVar

from PIL import Image

from qponder import prompts
from qponder.errors import QPonderError

K = TypeVar("K", bound=Hashable)

_RETRY_STATUS = {408, 429}  # plus every 5xx
_MALFORMED_RETRIES = 2  # a garbled body is usually a one-off glitch; more tries would only hide a real bug
_MAX_DELAY = 60.0
_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png"}


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class _Malformed(Exception):
    pass


def _one_line(text: str, limit: int = 300) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _server_message(raw: bytes) -> str:
    """The human part of an error body; servers disagree on where they put it."""
    text = raw.decode("utf-8", "replace")
    try:
        data = json.loads(text)
    except ValueError:
        return _one_line(text) or "(empty body)"
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict) and err.get("message"):
            return _one_line(str(err["message"]))
        for value in (err, data.get("message"), data.get("detail")):  # OpenAI / vLLM / FastAPI styles
            if value:
                return _one_line(value if isinstance(value, str) else json.dumps(value))
    return _one_line(text)


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:  # the HTTP-date form is rare from model servers; fall back to our own backoff
        return None


class OpenAITeacher:
    """Asks a large VLM for an expert quality report that ends in the project's answer format."""

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str = "OPENAI_API_KEY",
        temperature: float = 0.2,
        max_tokens: int = 512,
        timeout: float = 60.0,
        retries: int = 3,
        backoff: float = 1.0,
        concurrency: int = 4,
        use_mos_hint: bool = False,
        image_format: str = "JPEG",
        max_side: int | None = 1024,
        extra_body: dict | None = None,
    ):
        if not base_url or not base_url.startswith(("http://", "https://")):
            raise QPonderError(f"teacher base_url must start with http:// or https:// (got {base_url!r})")
        if not model:
            raise QPonderError("teacher model name is empty")
        fmt = image_format.upper().replace("JPG", "JPEG")
        if fmt not in _FORMATS:
            raise QPonderError(f"teacher image_format must be JPEG or PNG (got {image_format!r})")
        if concurrency < 1 or retries < 0 or timeout <= 0 or backoff < 0:
            raise QPonderError(
                f"teacher needs concurrency >= 1, retries >= 0, timeout > 0, backoff >= 0 "
                f"(got {concurrency}, {retries}, {timeout}, {backoff})"
            )
        if max_side is not None and max_side < 1:
            raise QPonderError(f"teacher max_side must be a positive number of pixels or None (got {max_side})")
        self.base_url = base_url.rstrip("/")
        self.url = f"{self.base_url}/chat/completions"
        self.model = model
        self.api_key_env = api_key_env
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.concurrency = concurrency
        self.use_mos_hint = use_mos_hint
        self.image_format = fmt
        self.max_side = max_side
        self.extra_body = dict(extra_body or {})
        self.template = prompts.load("teacher")
        self.hint_template = prompts.load("teacher_hint")
        # Recorded by callers in the run folder, so a distilled set says which prompt produced it.
        self.prompt_version = f"teacher:{prompts.version('teacher')}+hint:{prompts.version('teacher_hint')}"
        self._random = random.Random()
        self._random_lock = threading.Lock()

    # -- request building ---------------------------------------------------------------------------------------

    def prompt(self, mos: float | None = None) -> str:
        # Without a MOS (unlabelled images) the hint is dropped rather than failing: the prompt still stands alone.
        hint = self.hint_template.format(mos=float(mos)) if self.use_mos_hint and mos is not None else ""
        text = self.template.format(hint=hint)
        return re.sub(r"\n{3,}", "\n\n", text).strip()

    def image_url(self, image: Image.Image) -> str:
        img = image
        if self.max_side is not None and max(img.size) > self.max_side:
            scale = self.max_side / max(img.size)
            size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
            img = img.resize(size, Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        if self.image_format == "JPEG":
            if img.mode != "RGB":
                img = img.convert("RGB")
            img.save(buf, format="JPEG", quality=95)
        else:
            if img.mode not in ("RGB", "RGBA", "L", "LA"):
                img = img.convert("RGBA" if "A" in img.getbands() else "RGB")
            img.save(buf, format="PNG")
        data = base64.b64encode(buf.getvalue()).decode("ascii")
        return f"data:{_FORMATS[self.image_format]};base64,{data}"

    def request_body(self, image: Image.Image, mos: float | None = None) -> dict:
        body = {
            "model": self.model,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": self.image_url(image)}},
                        {"type": "text", "text": self.prompt(mos)},
                    ],
                }
            ],
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }
        body.update(self.extra_body)
        return body

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": "qponder"}
        # Read per request so a rotated key is picked up by a long distillation without a restart.
        key = os.environ.get(self.api_key_env, "").strip() if self.api_key_env else ""
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    # -- transport ----------------------------------------------------------------------------------------------

    def _once(self, payload: bytes) -> str:
        req = urllib.request.Request(self.url, data=payload, headers=self._headers(), method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            try:
                detail = _server_message(e.read())
            except (OSError, TimeoutError):
                detail = "(could not read error body)"
            message = f"HTTP {e.code}: {detail}"
            if e.code in _RETRY_STATUS or e.code >= 500:
                raise _Retryable(message, _retry_after(e.headers)) from None
            raise QPonderError(f"teacher server {self.url}: {message}") from None
        except (TimeoutError, socket.timeout):
            raise _Retryable(f"timed out after {self.timeout:g}s") from None
        except urllib.error.URLError as e:
            reason = e.reason
            if isinstance(reason, (TimeoutError, socket.timeout)):
                raise _Retryable(f"timed out after {self.timeout:g}s") from None
            raise _Retryable(f"cannot connect: {_one_line(str(reason))}") from None
        except (OSError, http.client.HTTPException) as e:  # resets, truncated bodies: they surface outside URLError
            raise _Retryable(f"connection error: {type(e).__name__}: {_one_line(str(e))}".rstrip(": ")) from None
        return self._content(raw)

    @staticmethod
    def _content(raw: bytes) -> str:
        try:
            data = json.loads(raw)
        except ValueError:
            raise _Malformed(f"response is not JSON: {_one_line(raw.decode('utf-8', 'replace'), 120)!r}") from None
        try:
            content = data["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            keys = ", ".join(sorted(data)) if isinstance(data, dict) else type(data).__name__
            raise _Malformed(f"response has no choices[0].message.content (top-level keys: {keys})") from None
        if isinstance(content, list):  # some servers return content parts even for plain text
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        if not isinstance(content, str):
            raise _Malformed(f"choices[0].message.content is {type(content).__name__}, not text")
        return content

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, _MAX_DELAY)
        base = min(self.backoff * 2**attempt, _MAX_DELAY)
        # Equal jitter: many workers that failed together must not all come back at the same instant.
        with self._random_lock:
            return base / 2 + self._random.uniform(0, base / 2)

    def _post(self, payload: bytes) -> str:
        last: Exception | None = None
        malformed = 0
        attempts = 0
        for attempt in range(self.retries + 1):
            if last is not None:
                time.sleep(self._delay(attempt - 1, getattr(last, "retry_after", None)))
            attempts += 1
            try:
                return self._once(payload)
            except _Retryable as e:
                last = e
            except _Malformed as e:
                last = e
                malformed += 1
                if malformed > _MALFORMED_RETRIES:
                    break
        tries = "1 attempt" if attempts == 1 else f"{attempts} attempts"
        raise QPonderError(f"teacher server {self.url}: {last} ({tries})")

    # -- public API ---------------------------------------------------------------------------------------------

    def complete(self, body: dict) -> str:
        """Any chat-completions request body (e.g. the text-only consistency judge), with this client's retries."""
        return self._post(json.dumps(body).encode("utf-8"))

    def describe(self, image: Image.Image, mos: float | None = None) -> str:
        """One request; the assistant's text as the server wrote it (parse it with ``qponder.models.answer``)."""
        payload = json.dumps(self.request_body(image, mos)).encode("utf-8")
        return self._post(payload)

    def describe_many(
        self, items: Iterable[tuple[K, Image.Image, float | None]]
    ) -> Iterator[tuple[K, str | None, str | None]]:
        """Yield ``(key, text, None)`` or ``(key, None, error)`` as requests finish, in any order.

        At most ``concurrency`` requests are in flight and ``items`` is pulled lazily, so a generator over a
        large dataset never has more than a handful of decoded images in memory. A failed item never stops
        the rest: a long distillation must not be lost to one bad image or one unlucky request.
        """
        source = iter(items)
        pool = cf.ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="qponder-teacher")
        pending: dict[cf.Future, Any] = {}
        exhausted = False
        finished = False
        try:
            while True:
                while not exhausted and len(pending) < self.concurrency:
                    try:
                        key, image, mos = next(source)
                    except StopIteration:
                        exhausted = True
                        break
                    pending[pool.submit(self.describe, image, mos)] = key
                if not pending:
                    break
                done, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                for fut in done:
                    key = pending.pop(fut)
                    text, error = None, None
                    try:
                        text = fut.result()
                    except QPonderError as e:
                        error = str(e)
                    except Exception as e:  # noqa: BLE001 - an unreadable image is one bad item, not a failed run
                        error = f"{type(e).__name__}: {_one_line(str(e))}"
                    yield key, text, error
            finished = True
        finally:
            # A caller that stops early should not wait for (or keep paying for) requests it will never read.
            pool.shutdown(wait=finished, cancel_futures=True)
