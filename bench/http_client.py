"""A minimal HTTP/1.1 keep-alive client for the load generator.

httpx costs about 2 ms of CPU per request; on a 2-core machine shared with the server, the load
generator then takes more CPU than the server it measures. This client writes the request in
one piece and reads the status line, the headers and a ``Content-Length`` body (what the
service sends), about a tenth of that. It is for benchmarks only: no TLS, no redirects, no
chunked bodies (an error), one request at a time per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit


class HttpError(Exception):
    """The connection broke or the answer was not what this client reads."""


class RawClient:
    def __init__(self, url: str, key: str) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self._headers = f"Host: {self.host}:{self.port}\r\nAuthorization: Bearer {key}\r\n"
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        """(status, body); HttpError if the connection fails (the next call reconnects)."""
        try:
            return await self._request(method, path, body)
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
            await self.close()
            raise HttpError(type(exc).__name__) from exc

    async def _request(self, method: str, path: str, body: bytes | None) -> tuple[int, bytes]:
        if self._writer is None or self._reader is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._reader, self._writer
        head = f"{method} {path} HTTP/1.1\r\n{self._headers}"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        writer.write(f"{head}\r\n".encode() + (body or b""))
        status = int((await reader.readline()).split(b" ", 2)[1])
        length = 0
        close = False
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                raise ValueError("chunked bodies are not read by this client")
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        content = await reader.readexactly(length)
        if close:
            await self.close()
        return status, content
