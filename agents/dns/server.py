"""DNS over UDP and TCP for the cluster's names (the add-on's front): dnslib reads and writes the
messages, :class:`agents.dns.records.Zone` decides the answers, two informers keep the zone current.

Every watch event marks the zone stale; the next query rebuilds it from the informers' stores (a
few milliseconds for hundreds of Services), so a new Service answers as soon as its watch event
has arrived. Answers for the cluster's names are authoritative; negative ones carry the zone's SOA
(its minimum is the TTL, so clients cache a miss no longer than a hit). Names outside the cluster
domain get NXDOMAIN at once: the lab is offline, there is no upstream to forward to. A UDP answer
that does not fit the client's buffer (512 bytes, or what its EDNS record offers) is sent truncated
(TC) so that the client asks again over TCP.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from dataclasses import dataclass
from typing import cast

from dnslib import AAAA, CNAME, PTR, QTYPE, RCODE, RR, SOA, SRV, A, DNSError, DNSHeader, DNSRecord
from dnslib.dns import RD

from agents.dns.records import Answer, Record, Zone
from agents.machinery.client import Client
from agents.machinery.informer import Informer
from agents.machinery.resources import ENDPOINT_SLICES, SERVICES

log = logging.getLogger(__name__)

UDP_LIMIT = 512  # the size of a UDP answer without EDNS
MAX_UDP = 4096  # the most this server puts in one datagram, whatever a client offers
TCP_IDLE = 10.0  # seconds a TCP connection may wait for its next query


@dataclass
class Counters:
    queries: int = 0
    nxdomain: int = 0
    rebuilds: int = 0


def _rdata(record: Record) -> RD:
    if record.type == "A":
        return A(record.value)
    if record.type == "AAAA":
        return AAAA(record.value)
    if record.type == "CNAME":
        return CNAME(record.value + ".")
    if record.type == "PTR":
        return PTR(record.value + ".")
    return SRV(priority=record.priority, weight=record.weight, port=record.port, target=record.value + ".")


class Resolver:
    """Turns a query message into an answer message (bytes in, bytes out; no I/O)."""

    def __init__(self, zone: Zone, *, ttl: int = 5) -> None:
        self.zone = zone
        self.ttl = ttl
        self.counters = Counters()

    def answer(self, data: bytes, *, limit: int = 0) -> bytes | None:
        """The reply to ``data``; ``limit`` > 0 is a UDP client's buffer (the reply is truncated to
        fit); None when ``data`` is not a DNS message at all (nothing to answer)."""
        self.counters.queries += 1
        try:
            request = DNSRecord.parse(data)
        except (DNSError, struct.error, IndexError, ValueError):
            return self._format_error(data)
        if request.header.qr:
            return None  # an answer, not a question: never answer those (no loops)
        reply = DNSRecord(DNSHeader(id=request.header.id, qr=1, aa=1, ra=0, rd=request.header.rd))
        reply.questions = list(request.questions)
        if request.header.opcode != 0:
            reply.header.rcode = RCODE.NOTIMP
            return bytes(reply.pack())
        if len(request.questions) != 1:
            reply.header.rcode = RCODE.FORMERR
            return bytes(reply.pack())
        question = request.questions[0]
        qname = str(question.qname).rstrip(".").lower()
        qtype = QTYPE.get(question.qtype, str(question.qtype))
        found = self.zone.lookup(qname, qtype)
        self._fill(reply, found)
        packed = bytes(reply.pack())
        if limit:
            edns = next((r for r in request.ar if r.rtype == QTYPE.OPT), None)
            room = min(max(UDP_LIMIT, edns.rclass if edns is not None else UDP_LIMIT), MAX_UDP)
            if len(packed) > room:
                reply.rr, reply.auth = [], []
                reply.header.tc = 1
                packed = bytes(reply.pack())
        return packed

    def _fill(self, reply: DNSRecord, found: Answer) -> None:
        reply.header.aa = int(found.authoritative)
        if found.nxdomain:
            self.counters.nxdomain += 1
            reply.header.rcode = RCODE.NXDOMAIN
        for record in found.records:
            reply.add_answer(RR(record.name + ".", getattr(QTYPE, record.type), rdata=_rdata(record), ttl=self.ttl))
        if not found.records and found.authoritative:
            name, primary, mailbox = self.zone.soa()
            soa = SOA(primary + ".", mailbox + ".", (int(time.time()) & 0x7FFFFFFF, 7200, 1800, 86400, self.ttl))
            reply.add_auth(RR(name + ".", QTYPE.SOA, rdata=soa, ttl=self.ttl))

    def _format_error(self, data: bytes) -> bytes | None:
        """FORMERR when at least the header can be read (the client learns its query was bad)."""
        if len(data) < 12:
            return None
        ident, flags = struct.unpack("!HH", data[:4])
        if flags & 0x8000:
            return None
        header = DNSHeader(id=ident, qr=1, rcode=RCODE.FORMERR)
        return bytes(DNSRecord(header).pack())


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        reply = self.server.resolve(data, limit=UDP_LIMIT)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


class DnsServer:
    """The zone kept current by informers, served on one address over UDP and TCP."""

    def __init__(self, client: Client, *, domain: str, ttl: int) -> None:
        self.services = Informer(client, SERVICES)
        self.slices = Informer(client, ENDPOINT_SLICES)
        self.zone = Zone(domain)
        self.resolver = Resolver(self.zone, ttl=ttl)
        self._stale = True
        for informer in (self.services, self.slices):
            informer.on_any(self._changed)

    def _changed(self, _obj: object) -> None:
        self._stale = True

    def refresh(self) -> None:
        """The zone rebuilt from the informers' stores when a watch event came since the last build."""
        if self._stale:
            self._stale = False
            self.zone.build(self.services.items(), self.slices.items())
            self.resolver.counters.rebuilds += 1

    def resolve(self, data: bytes, *, limit: int = 0) -> bytes | None:
        self.refresh()
        return self.resolver.answer(data, limit=limit)

    async def _tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                size = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), TCP_IDLE))[0]
                reply = self.resolve(await asyncio.wait_for(reader.readexactly(size), TCP_IDLE))
                if reply is None:
                    break
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    async def run(self, address: str, port: int, ready: asyncio.Event) -> None:
        tasks = [asyncio.create_task(informer.run()) for informer in (self.services, self.slices)]
        try:
            await asyncio.gather(self.services.synced.wait(), self.slices.synced.wait())
            loop = asyncio.get_running_loop()
            udp, _ = await loop.create_datagram_endpoint(lambda: _Udp(self), local_addr=(address, port))
            tcp = await asyncio.start_server(self._tcp, address, port)
            self.refresh()
            log.info(
                "kube-dns serving %s on %s:%d (udp, tcp): %d services, %d records",
                self.zone.domain,
                address,
                port,
                len(self.services.store),
                self.zone.size,
            )
            ready.set()
            try:
                await asyncio.gather(*tasks)
            finally:
                udp.close()
                tcp.close()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
