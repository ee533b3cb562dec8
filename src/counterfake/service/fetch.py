"""Fetching an image by URL without becoming a proxy into the operator's network (SSRF).

Off unless the operator turns it on (`fetch_urls`). Then: http and https only; every address a
host name resolves to must be public (not private, loopback, link-local, shared, reserved or a
cloud metadata address) unless the operator allowed its network; the connection goes to the
address that was checked, not to a second DNS answer; every redirect is checked the same way;
the body is capped at `max_bytes` and the whole fetch at `timeout` seconds.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Final

import anyio
import httpx

from ..errors import AccessError, FetchError, MediaError
from ..settings import DEFAULTS

__all__ = ["Fetcher", "parse_networks"]

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[str]]]

_METADATA: Final = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200")
)
_MAX_REDIRECTS: Final = 3


_NAT64: Final = (
    ipaddress.ip_network("64:ff9b::/96"),
    ipaddress.ip_network("64:ff9b:1::/48"),
)
_IPV4_COMPATIBLE: Final = ipaddress.ip_network("::/96")


def _embedded_ipv4(address: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries and reaches: IPv4-mapped, IPv4-compatible
    (::a.b.c.d), NAT64 (64:ff9b::/96) and 6to4 (2002::/16)."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    low = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if any(address in network for network in _NAT64):
        return low
    if address in _IPV4_COMPATIBLE and int(address) > 1:
        return low
    return None


def parse_networks(text: str) -> list[Network]:
    """`10.0.0.0/8, 192.168.1.7` -> networks; an operator setting, so errors are loud."""
    return [ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part]


async def _resolve(host: str, port: int) -> list[str]:
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class Fetcher:
    def __init__(
        self,
        *,
        enabled: bool,
        allow: Sequence[Network] = (),
        timeout: float = 10.0,
        max_bytes: int = DEFAULTS["max_bytes"],
        resolver: Resolver = _resolve,
    ) -> None:
        self.enabled = enabled
        self._allow = list(allow)
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._resolver = resolver

    def allowed(self, address: Address) -> bool:
        embedded = _embedded_ipv4(address)
        if embedded is not None and not self.allowed(embedded):
            return False  # an IPv6 form of a private IPv4 address reaches that address
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        if address in _METADATA:
            return False
        if any(address in network for network in self._allow):
            return True
        return address.is_global and not address.is_multicast

    async def fetch(self, url: str) -> bytes:
        """The body at `url`, or FetchError (url_refused, url_fetch_failed) / MediaError."""
        if not self.enabled:
            raise AccessError(
                "fetching images by URL is turned off on this service (fetch_urls)",
                code="url_fetch_disabled",
            )
        try:
            with anyio.fail_after(self._timeout):
                async with httpx.AsyncClient(
                    follow_redirects=False, trust_env=False, timeout=self._timeout
                ) as client:
                    return await self._fetch(client, url)
        except TimeoutError:
            raise FetchError(f"fetching the URL took over {self._timeout} s") from None
        except httpx.HTTPError as exc:
            raise FetchError(f"fetching the URL failed: {exc.__class__.__name__}") from None

    async def _fetch(self, client: httpx.AsyncClient, raw_url: str) -> bytes:
        try:
            url = httpx.URL(raw_url)
        except (httpx.InvalidURL, TypeError) as exc:
            raise FetchError("not a URL", code="url_refused") from exc
        for _ in range(_MAX_REDIRECTS + 1):
            if url.scheme not in ("http", "https") or not url.host:
                raise FetchError("only http and https URLs are fetched", code="url_refused")
            port = url.port or (443 if url.scheme == "https" else 80)
            address = await self._checked_address(url.host, port)
            pinned = url.copy_with(host=address)
            extensions = {"sni_hostname": url.host} if url.scheme == "https" else {}
            request = client.build_request(
                "GET", pinned, headers={"Host": url.netloc.decode("ascii")}, extensions=extensions
            )
            response = await client.send(request, stream=True)
            try:
                if response.is_redirect and "location" in response.headers:
                    url = url.join(response.headers["location"])
                    continue
                if response.status_code >= 400:
                    raise FetchError(f"the URL answered HTTP {response.status_code}")
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > self._max_bytes:
                    raise MediaError(
                        f"the URL's body is {declared} bytes; the limit is {self._max_bytes}",
                        code="input_too_large",
                    )
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > self._max_bytes:
                        raise MediaError(
                            f"the URL's body exceeds {self._max_bytes} bytes",
                            code="input_too_large",
                        )
                return bytes(body)
            finally:
                await response.aclose()
        raise FetchError(f"more than {_MAX_REDIRECTS} redirects", code="url_refused")

    async def _checked_address(self, host: str, port: int) -> str:
        try:
            addresses = [ipaddress.ip_address(host)]
        except ValueError:
            try:
                resolved = await self._resolver(host, port)
            except OSError:
                raise FetchError(f"cannot resolve {host!r}") from None
            addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in resolved]
        if not addresses:
            raise FetchError(f"cannot resolve {host!r}")
        refused = [a for a in addresses if not self.allowed(a)]
        if refused:
            raise FetchError(
                f"{host!r} resolves to a private, local or reserved address; refused",
                code="url_refused",
            )
        return str(addresses[0])
