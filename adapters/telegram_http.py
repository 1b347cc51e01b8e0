"""python-telegram-bot's HTTP transport on aiohttp (its `BaseRequest` extension point).

Why: with PTB's default transport (httpx) the Bot API calls were the largest item in a
profile of the webhook server under load, mostly httpcore's connection-pool bookkeeping
(each request scans the pool). Side by side against the same local fake, 3,000
sendMessage calls at concurrency 50 cost 1.65 ms of CPU per call with httpx and 0.29 ms
with this class (428 vs 2,654 calls/s; bench/load_bench.py, BENCHMARKS.md). aiohttp is
what the server already runs on. PTB still builds every request and parses every answer
(errors, `RetryAfter`, ...); this class only moves bytes.
"""
from __future__ import annotations

import asyncio

import aiohttp
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData

__all__ = ["AiohttpRequest"]


def _value(value: object, default: float | None) -> float | None:
    return default if isinstance(value, type(BaseRequest.DEFAULT_NONE)) else value  # type: ignore[return-value]


class AiohttpRequest(BaseRequest):
    """A pooled aiohttp session; parameters go as JSON (or multipart when uploading files)."""

    __slots__ = ("_pool_size", "_read_timeout", "_connect_timeout", "_write_timeout", "_session")

    def __init__(self, *, connection_pool_size: int = 100, read_timeout: float | None = 5.0,
                 connect_timeout: float | None = 5.0, write_timeout: float | None = 5.0) -> None:
        self._pool_size = connection_pool_size
        self._read_timeout = read_timeout
        self._connect_timeout = connect_timeout
        self._write_timeout = write_timeout
        self._session: aiohttp.ClientSession | None = None

    @property
    def read_timeout(self) -> float | None:
        return self._read_timeout

    async def initialize(self) -> None:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._pool_size, keepalive_timeout=30)
            self._session = aiohttp.ClientSession(connector=connector, headers={"User-Agent": self.USER_AGENT})

    async def shutdown(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def do_request(self, url: str, method: str, request_data: RequestData | None = None,
                         read_timeout: object = BaseRequest.DEFAULT_NONE,
                         write_timeout: object = BaseRequest.DEFAULT_NONE,
                         connect_timeout: object = BaseRequest.DEFAULT_NONE,
                         pool_timeout: object = BaseRequest.DEFAULT_NONE) -> tuple[int, bytes]:
        if self._session is None or self._session.closed:
            await self.initialize()
        assert self._session is not None
        timeout = aiohttp.ClientTimeout(
            total=None,
            sock_connect=_value(connect_timeout, self._connect_timeout),
            sock_read=_value(read_timeout, self._read_timeout))
        kwargs: dict[str, object] = {}
        if request_data is not None:
            if request_data.contains_files:
                form = aiohttp.FormData()
                for name, value in request_data.json_parameters.items():
                    form.add_field(name, value)
                for name, file in request_data.multipart_data.items():
                    filename, content, mime = file if len(file) == 3 else (*file, None)  # type: ignore[misc]
                    form.add_field(name, content, filename=filename, content_type=mime)
                kwargs["data"] = form
            else:
                kwargs["data"] = request_data.json_payload
                kwargs["headers"] = {"Content-Type": "application/json"}
        try:
            async with self._session.request(method, url, timeout=timeout, **kwargs) as resp:  # type: ignore[arg-type]
                return resp.status, await resp.read()
        except asyncio.TimeoutError as e:
            raise TimedOut(f"Timed out talking to Telegram ({type(e).__name__})") from e
        except aiohttp.ClientError as e:
            raise NetworkError(f"aiohttp.{type(e).__name__}: {e}") from e
