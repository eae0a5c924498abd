"""Announce a site broker on the local network (mDNS / DNS-SD), so agents need no address.

With ``announce:`` in a broker's mesh entry, ``fogmesh-broker run`` registers one
``_fogmesh-mqtt._tcp`` service (:mod:`fogmesh.protocol.lan`) for the chosen listener: its
addresses and port, and a TXT record with the site, the broker's name, whether it speaks TLS
and its certificate's fingerprint. The announcement is withdrawn when the broker stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

import ifaddr
from zeroconf import IPVersion, ServiceInfo
from zeroconf.asyncio import AsyncZeroconf

from fogmesh.broker.config import BrokerSpec, ListenerSpec, MeshConfigError
from fogmesh.bus import backoff_delay
from fogmesh.protocol.lan import (
    SERVICE_TYPE,
    TXT_BROKER,
    TXT_FINGERPRINT,
    TXT_SITE,
    TXT_TLS,
    TXT_VERSION,
    fingerprint,
)

__all__ = ["Announcement", "announce", "announcement", "cert_fingerprint"]

log = logging.getLogger(__name__)
_WILDCARDS = ("0.0.0.0", "", "::")  # noqa: S104 - the listener's "every address", not a bind


@dataclass(frozen=True)
class Announcement:
    """What one broker announces."""

    instance: str
    addresses: list[str]
    port: int
    properties: dict[str, str]

    def info(self) -> ServiceInfo:
        """The zeroconf record."""
        return ServiceInfo(
            SERVICE_TYPE,
            f"{self.instance}.{SERVICE_TYPE}",
            addresses=[socket.inet_aton(a) for a in self.addresses],
            port=self.port,
            properties=self.properties,
            server=f"{self.instance}.local.",
        )


def cert_fingerprint(certfile: Path) -> str:
    """The fingerprint (:func:`fogmesh.protocol.lan.fingerprint`) of a PEM file's first cert."""
    pem = certfile.read_text(encoding="ascii")
    end = "-----END CERTIFICATE-----"
    first = pem[: pem.index(end) + len(end)]
    return fingerprint(ssl.PEM_cert_to_DER_cert(first))


def _listener(spec: BrokerSpec) -> ListenerSpec:
    assert spec.announce is not None
    if spec.announce.listener is not None:
        return next(lst for lst in spec.listeners if lst.name == spec.announce.listener)
    tcp = [lst for lst in spec.listeners if lst.type == "tcp"]
    for lst in tcp:
        if lst.tls is not None:
            return lst
    if not tcp:
        raise MeshConfigError("announce: the broker has no TCP listener")
    return tcp[0]


def _local_ipv4() -> list[str]:
    """Every IPv4 address of this machine (network namespace) but loopback."""
    out = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, str) and not ip.ip.startswith("127."):
                out.append(ip.ip)
    return out


def announcement(name: str, spec: BrokerSpec) -> Announcement:
    """What broker ``name`` announces (``spec.announce`` must be set)."""
    assert spec.announce is not None
    lst = _listener(spec)
    host = spec.announce.host or lst.host
    addresses = _local_ipv4() if host in _WILDCARDS else [host]
    site = spec.announce.site or name
    props = {TXT_VERSION: "1", TXT_SITE: site, TXT_BROKER: name, TXT_TLS: "0"}
    if lst.tls is not None:
        props[TXT_TLS] = "1"
        props[TXT_FINGERPRINT] = cert_fingerprint(lst.tls.certfile)
    return Announcement(f"{site}-{name}", addresses, lst.port, props)


async def announce(name: str, spec: BrokerSpec, stop: asyncio.Event) -> None:
    """Announce broker ``name`` until ``stop`` is set; a network that refuses multicast is
    logged and tried again (jittered back-off), never fatal to the broker."""
    what = announcement(name, spec)
    info = what.info()
    attempt = 0
    while not stop.is_set():
        zc = AsyncZeroconf(ip_version=IPVersion.V4Only)
        try:
            async with asyncio.timeout(30):
                await zc.async_register_service(info, allow_name_change=True)
        except (OSError, TimeoutError, ValueError) as exc:  # zeroconf's errors are ValueErrors
            log.warning("cannot announce %s: %s: %s", what.instance, type(exc).__name__, exc)
            await zc.async_close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(backoff_delay(attempt, base=1.0, cap=60.0)):
                    await stop.wait()
            attempt += 1
            continue
        log.info(
            "announcing %s on %s port %d (%s)",
            SERVICE_TYPE,
            ", ".join(what.addresses),
            what.port,
            " ".join(f"{k}={v}" for k, v in what.properties.items()),
        )
        try:
            await stop.wait()
        finally:
            try:
                async with asyncio.timeout(5):
                    await zc.async_unregister_service(info)
            except (TimeoutError, OSError) as exc:  # the record then expires on its own (TTL)
                log.warning("withdrawing the announcement failed: %s", exc)
            finally:
                await zc.async_close()
