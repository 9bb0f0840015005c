"""Strategies for coordination.k8s.io Leases and discovery.k8s.io EndpointSlices."""

from __future__ import annotations

from agents.apiserver import validation as v
from agents.apiserver.kinds.base import Strategy
from agents.apiserver.status import invalid, required
from agents.apiserver.validation import Errors
from agents.machinery.objects import Object


class LeaseStrategy(Strategy):
    def validate(self, obj: Object) -> Errors:
        spec = obj.get("spec") or {}
        out = v.positive("spec.leaseDurationSeconds", spec.get("leaseDurationSeconds"))
        out += v.non_negative("spec.leaseTransitions", spec.get("leaseTransitions"))
        return out


class EndpointSliceStrategy(Strategy):
    def default(self, obj: Object) -> None:
        for port in obj.get("ports") or []:
            port.setdefault("protocol", "TCP")
            port.setdefault("name", "")

    def validate(self, obj: Object) -> Errors:
        out: Errors = []
        kind = obj.get("addressType")
        if not kind:
            out.append(required("addressType"))
        else:
            out += v.one_of("addressType", kind, ("IPv4", "IPv6", "FQDN"))
        for i, endpoint in enumerate(obj.get("endpoints") or []):
            addresses = endpoint.get("addresses") or []
            if not 1 <= len(addresses) <= 100:
                out.append(
                    invalid(
                        f"endpoints[{i}].addresses",
                        len(addresses),
                        "must contain between 1 and 100 addresses",
                    )
                )
            if kind in ("IPv4", "IPv6"):
                for j, address in enumerate(addresses):
                    out += v.ip_address(f"endpoints[{i}].addresses[{j}]", address)
        for i, port in enumerate(obj.get("ports") or []):
            if port.get("port") is not None:
                out += v.port_number(f"ports[{i}].port", port["port"])
            out += v.protocol(f"ports[{i}].protocol", port.get("protocol", "TCP"))
        return out

    def validate_update(self, new: Object, old: Object) -> Errors:
        out = self.validate(new)
        if new.get("addressType") != old.get("addressType"):
            out.append(invalid("addressType", new.get("addressType"), "field is immutable"))
        return out
