"""Where a third-party copy may connect: the ``[tpc] remotes`` allow-list, and the addresses it vets.

A COPY makes the server open a connection a client chose, so nothing is
reached that the list does not name.  An entry is a host name (that name), a
``.domain`` (that domain and every name below it), an address or a CIDR network.  A URL's
host that is an address must lie in a listed network; a name must be listed
(or below a listed domain), or every address it resolves to must lie in a
listed network.  Loopback, link-local, unspecified and multicast addresses are
refused unless a listed network is itself of that kind (``127.0.0.1``,
``::1``, ``169.254.0.0/16``): ``0.0.0.0/0`` never reaches this host's own
services, and a listed name that resolves to ``127.0.0.1`` does not either.
The connection goes to the addresses vetted here, never to a name resolved
again (a second lookup could answer otherwise).
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Iterable, List, Tuple, Union

Address = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


class RemoteRefused(Exception):
    """The remote is not one the list allows (403), or its name does not resolve."""


class Remotes:
    """The allow-list of ``[tpc] remotes`` (its parsed entries, lower case)."""

    def __init__(self, entries: Iterable[str]) -> None:
        self.networks: List[Network] = []
        self.names: List[str] = []
        self.domains: List[str] = []
        for entry in entries:
            try:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                (self.domains if entry.startswith(".") else self.names).append(entry.rstrip("."))

    def __bool__(self) -> bool:
        return bool(self.networks or self.names or self.domains)

    def addresses(self, host: str, port: int) -> List[Tuple[str, int]]:
        """The (address, port) pairs a connection to ``host`` may use, in the resolver's order;
        RemoteRefused when there is none."""
        literal = _literal(host)
        if literal is not None:
            if not self._admits(literal, named=False):
                raise RemoteRefused(f"{host} is not among the remotes this archive copies with ([tpc] remotes)")
            return [(str(literal), port)]
        name = host.lower().rstrip(".")
        named = name in self.names or any(name.endswith(domain) or name == domain[1:] for domain in self.domains)
        if not named and not self.networks:
            raise RemoteRefused(f"{host} is not among the remotes this archive copies with ([tpc] remotes)")
        try:
            found = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise RemoteRefused(f"{host} does not resolve: {exc}") from None
        resolved = list(dict.fromkeys(_literal(str(info[4][0])) for info in found))
        allowed = [address for address in resolved if address is not None and self._admits(address, named)]
        if not allowed or (not named and len(allowed) != len(resolved)):
            raise RemoteRefused(f"{host} resolves to addresses this archive does not copy with ([tpc] remotes)")
        return [(str(address), port) for address in allowed]

    def _admits(self, address: Address, named: bool) -> bool:
        """Whether a connection may go to ``address`` (of a listed name when ``named``)."""
        if _special(address):
            # the listed network lies wholly in that kind (0.0.0.0/0 does not: it lists no loopback)
            return any(address in network and _special(network) for network in self.networks)
        return named or any(address in network for network in self.networks)


def _literal(host: str) -> Union[Address, None]:
    """The address ``host`` writes (an IPv4-mapped IPv6 one as IPv4), None for a name."""
    try:
        address = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _special(address: Union[Address, Network]) -> bool:
    """This host's own, its link's, or no one's (an address, or a network wholly so): reached only
    when listed as such."""
    return address.is_loopback or address.is_link_local or address.is_unspecified or address.is_multicast
