"""A small client for tailscaled's LocalAPI over its unix socket.

We read status (our DNS name, IPs, whether the tailnet issues HTTPS certs), the applied
serve config (readiness), WhoIs (who a tagged caller is) and the node's packet filter
(which ports peers may open: packetfilter.py). The LocalAPI refuses
requests whose Host is not `local-tailscaled.sock`, so that name is the base URL.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

BASE = "http://local-tailscaled.sock/localapi/v0"


class LocalAPIError(RuntimeError):
    """tailscaled did not answer as expected; the message says which call."""


class LocalAPI:
    def __init__(self, socket: Path, timeout: float = 5.0) -> None:
        self.socket = socket
        self._client = httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=str(socket)), timeout=timeout)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _get(self, path: str, **params: str) -> httpx.Response:
        try:
            return await self._client.get(f"{BASE}/{path}", params=params or None)
        except httpx.HTTPError as exc:
            raise LocalAPIError(f"tailscaled LocalAPI at {self.socket} ({path}): {exc!r}") from exc

    async def status(self) -> dict[str, Any]:
        resp = await self._get("status", peers="false")
        if resp.status_code != 200:
            raise LocalAPIError(f"LocalAPI status answered {resp.status_code}: {resp.text[:200]}")
        return resp.json()

    async def serve_config(self) -> dict[str, Any]:
        resp = await self._get("serve-config")
        if resp.status_code != 200:
            raise LocalAPIError(f"LocalAPI serve-config answered {resp.status_code}: {resp.text[:200]}")
        return resp.json() or {}

    async def set_serve_config(self, config: dict[str, Any]) -> None:
        """Apply a serve config directly (containerboot does this in the image; tests and
        the standalone `gateway` command use it)."""
        try:
            resp = await self._client.post(f"{BASE}/serve-config", json=config)
        except httpx.HTTPError as exc:
            raise LocalAPIError(f"tailscaled LocalAPI at {self.socket} (serve-config): {exc!r}") from exc
        if resp.status_code != 200:
            raise LocalAPIError(f"LocalAPI serve-config POST answered {resp.status_code}: {resp.text[:200]}")

    async def packet_filter(self) -> Any:
        """The netmap's compiled packet filter (`debug-packet-filter-matches`; needs the
        daemon's own uid or root: LocalAPI write access)."""
        resp = await self._get("debug-packet-filter-matches")
        if resp.status_code != 200:
            raise LocalAPIError(f"LocalAPI debug-packet-filter-matches answered {resp.status_code}: "
                                f"{resp.text.strip()[:200]}")
        try:
            return resp.json()
        except ValueError as exc:
            raise LocalAPIError(f"LocalAPI debug-packet-filter-matches: not JSON ({exc})") from None

    async def whois(self, ip: str) -> dict[str, Any] | None:
        resp = await self._get("whois", addr=ip)
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise LocalAPIError(f"LocalAPI whois answered {resp.status_code}: {resp.text[:200]}")
        return resp.json()
