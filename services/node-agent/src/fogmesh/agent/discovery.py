"""Finding the site broker on the LAN (mDNS / DNS-SD), so an agent needs no broker address.

With ``discovery: {enabled: true}`` (or ``--discover``) the agent browses for
``_fogmesh-mqtt._tcp`` services (:mod:`fogmesh.protocol.lan`, announced by ``fogmesh-broker``
with ``announce:``) for up to ``timeout_s``, waits ``settle_s`` after the first answer for more,
checks each, picks one and says which and why; its ``broker:`` host, port and TLS are then the
chosen broker's (the rest of the block, e.g. ``ca_file``, stays).

An announcement is only a hint. Once TLS is on (``broker.tls``, or a trusted ``fingerprint``)
a plain one is ignored, and a TLS one counts only if the certificate the broker presents has
the fingerprint it announced, the trusted fingerprint if one is set, and a chain the
``ca_file`` signed if one is set. Among those left the trusted ``site`` comes first, then TLS,
then the name.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog
from pydantic import ValidationError

from fogmesh.agent.config import DiscoverySettings
from fogmesh.protocol import FogmeshError
from fogmesh.protocol.lan import (
    SERVICE_TYPE,
    TXT_BROKER,
    TXT_FINGERPRINT,
    TXT_SITE,
    TXT_TLS,
    fingerprint,
)

if TYPE_CHECKING:
    from fogmesh.agent.config import AgentConfig

__all__ = [
    "Candidate",
    "Choice",
    "DiscoveryFailed",
    "DiscoverySettings",
    "browse",
    "choose",
    "discover",
    "discover_broker",
]

log = structlog.get_logger("fogmesh.agent.discovery")


class DiscoveryFailed(FogmeshError):
    """No announced broker could be used."""


@dataclass
class Candidate:
    """One announcement heard, and what checking it found."""

    instance: str
    addresses: list[str]
    port: int
    site: str
    broker: str
    tls: bool
    announced_fp: str | None
    presented_fp: str | None = None
    rejected: str = ""
    """Why it is not usable ('' when it is)."""

    def where(self) -> str:
        return f"{self.addresses[0] if self.addresses else '?'}:{self.port}"


@dataclass
class Choice:
    """The broker chosen, why, and what became of the others."""

    chosen: Candidate
    reason: str
    others: list[Candidate] = field(default_factory=list)


def _text(props: dict[bytes, bytes | None], key: str) -> str:
    raw = props.get(key.encode())
    return raw.decode(errors="replace") if raw else ""


async def browse(settings: DiscoverySettings) -> list[Candidate]:
    """Every fogmesh broker announced within the time allowed (answers for up to
    ``timeout_s``; ``settle_s`` more after the first)."""
    from zeroconf import IPVersion, ServiceStateChange
    from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

    names: asyncio.Queue[str] = asyncio.Queue()

    def changed(**kw: Any) -> None:
        if kw["state_change"] is not ServiceStateChange.Removed:
            names.put_nowait(kw["name"])

    found: dict[str, Candidate] = {}
    zc = AsyncZeroconf(ip_version=IPVersion.V4Only)
    browser = AsyncServiceBrowser(zc.zeroconf, SERVICE_TYPE, handlers=[changed])
    try:
        deadline = time.monotonic() + settings.timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                async with asyncio.timeout(left):
                    name = await names.get()
            except TimeoutError:
                break
            info = AsyncServiceInfo(SERVICE_TYPE, name)
            if not await info.async_request(zc.zeroconf, 3000):
                continue
            props = info.properties
            found[name] = Candidate(
                instance=name.removesuffix("." + SERVICE_TYPE),
                addresses=info.parsed_addresses(IPVersion.V4Only),
                port=int(info.port or 0),
                site=_text(props, TXT_SITE),
                broker=_text(props, TXT_BROKER),
                tls=_text(props, TXT_TLS) == "1",
                announced_fp=_text(props, TXT_FINGERPRINT) or None,
            )
            # the first answer shortens the wait: the others on the LAN answer within settle_s
            deadline = min(deadline, time.monotonic() + settings.settle_s)
    finally:
        await browser.async_cancel()
        await zc.async_close()
    return list(found.values())


def _presented(host: str, port: int, timeout: float) -> bytes:
    """The DER certificate the TLS server at ``host:port`` presents (chain not checked here)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # we only read the certificate, to fingerprint it
    with (
        socket.create_connection((host, port), timeout=timeout) as sock,
        ctx.wrap_socket(sock) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    if not der:
        raise ssl.SSLError("no certificate presented")
    return der


def _chain_ok(host: str, port: int, cafile: str, timeout: float) -> None:
    """Raise unless the server's chain is signed by ``cafile`` (the name is checked later, by
    the connection itself)."""
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.check_hostname = False
    with socket.create_connection((host, port), timeout=timeout) as sock, ctx.wrap_socket(sock):
        pass


def _check(cand: Candidate, settings: DiscoverySettings, tls_on: bool, cafile: str | None) -> None:
    """Fill ``cand.rejected`` (and ``presented_fp``): blocking, one TLS handshake or two."""
    if not cand.addresses or not cand.port:
        cand.rejected = "no address in the announcement"
        return
    if not cand.tls:
        if tls_on:
            cand.rejected = "plain MQTT, and TLS is on: it cannot be verified"
        return
    host = cand.addresses[0]
    try:
        cand.presented_fp = fingerprint(_presented(host, cand.port, 5.0))
    except (OSError, ssl.SSLError) as exc:
        cand.rejected = f"TLS handshake failed: {exc}"
        return
    if cand.presented_fp != cand.announced_fp:
        cand.rejected = (
            f"announces fingerprint {cand.announced_fp} but presents {cand.presented_fp}"
        )
    elif settings.fingerprint is not None and cand.presented_fp != settings.fingerprint:
        cand.rejected = f"fingerprint {cand.presented_fp} is not the trusted one"
    elif cafile is not None:
        try:
            _chain_ok(host, cand.port, cafile, 5.0)
        except (OSError, ssl.SSLError) as exc:
            cand.rejected = f"certificate not signed by {cafile}: {exc}"


def choose(
    found: list[Candidate], settings: DiscoverySettings, *, tls_on: bool, cafile: str | None
) -> Choice:
    """Check every candidate and pick the best usable one; :class:`DiscoveryFailed` if none."""
    tls_on = tls_on or settings.fingerprint is not None
    for cand in found:
        _check(cand, settings, tls_on, cafile)
    usable = [c for c in found if not c.rejected]
    if not usable:
        heard = "; ".join(f"{c.instance}: {c.rejected}" for c in found) or "no announcement"
        raise DiscoveryFailed(f"no usable fogmesh broker on the LAN ({heard})")
    usable.sort(key=lambda c: (c.site != settings.site, not c.tls, c.instance))
    best = usable[0]
    why = []
    if settings.fingerprint is not None:
        why.append("its certificate has the trusted fingerprint")
    elif best.tls:
        why.append("its certificate has the fingerprint it announced")
    if settings.site is not None:
        why.append(
            f"site {best.site} is the trusted one"
            if best.site == settings.site
            else f"no broker of the trusted site {settings.site} answered"
        )
    if len(usable) > 1:
        why.append(f"first of {len(usable)} usable (trusted site, then TLS, then name)")
    if not why:
        why.append("the only usable announcement")
    return Choice(best, "; ".join(why), [c for c in found if c is not best])


async def discover(settings: DiscoverySettings, *, tls_on: bool, cafile: str | None) -> Choice:
    """Browse, check, choose, and log the choice and the others' fate."""
    started = time.monotonic()
    found = await browse(settings)
    choice = await asyncio.to_thread(choose, found, settings, tls_on=tls_on, cafile=cafile)
    best = choice.chosen
    log.info(
        "discovery.chose",
        took_s=round(time.monotonic() - started, 2),
        instance=best.instance,
        site=best.site,
        broker=best.broker,
        address=best.where(),
        tls=best.tls,
        reason=choice.reason,
    )
    for other in choice.others:
        log.info(
            "discovery.passed_over",
            instance=other.instance,
            site=other.site,
            address=other.where(),
            why=other.rejected or "a better one was usable",
        )
    return choice


async def discover_broker(config: AgentConfig) -> AgentConfig:
    """``config`` with its broker host, port and TLS set to the discovered site broker's."""
    settings = config.discovery
    broker = config.broker
    cafile = str(broker.ca_file) if broker.ca_file is not None else None
    choice = await discover(settings, tls_on=broker.tls, cafile=cafile)
    best = choice.chosen
    update: dict[str, Any] = {"host": best.addresses[0], "port": best.port, "tls": best.tls}
    try:
        new = broker.model_validate({**broker.model_dump(), **update})
    except ValidationError as exc:
        raise DiscoveryFailed(f"{best.instance}: the broker block does not fit it: {exc}") from exc
    return config.model_copy(update={"broker": new})
