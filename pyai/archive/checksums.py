"""Checksums of stored files: the algorithms, their names, the stored form.

One name per algorithm inside pyai (``sha256``, ``sha512``, ``sha1``, ``md5``,
the hashlib names, and ``adler32``, zlib's); the standards spell them two ways:

- RFC 9530 (``Content-Digest``, ``Repr-Digest``): ``sha-256`` (``sha``,
  ``md5`` and ``adler`` are registered as deprecated but still named);
- RFC 3230 (``Digest``; ``Content-MD5`` of RFC 1864): ``SHA-256``,
  ``ADLER32``, the algorithm case-insensitive.

A file keeps several checksums at once, stored as the text
``sha256:<hex> md5:<hex> adler32:<hex>`` (see ``encode_set``/``decode_set``;
one ``sha256:<hex>``, the form of earlier versions, still reads).  The HTTP
fields that carry digests are read and written by ``pyai.web.digest_fields``.
"""

import functools
import hashlib
import os
import time
import zlib
from typing import TYPE_CHECKING, Callable, Dict, List, Mapping, Optional, Protocol, Sequence, Tuple

from pyai.archive.beside import Beside

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

try:  # zlib's results, summed 32 bytes a step with AVX2 (csrc/pyai_adler32.c): about 10x zlib's speed
    from pyai.archive._adler32 import adler32 as _adler32
except ImportError:  # a pure-Python build
    _adler32 = zlib.adler32

ALGORITHMS = ("sha256", "sha512", "sha1", "md5", "adler32")
# Strong enough to say "these are the stored bytes" (no crafted collisions).
STRONG = ("sha256", "sha512")
# What a PUT computes and keeps unless ``[archive] checksum`` says otherwise: sha256
# (write-once retries compare it), adler32 (what grid clients ask for) and md5.
DEFAULT_CONFIG = "sha256, adler32, md5"
# RFC 9530 names (Content-Digest, Repr-Digest) and RFC 3230 names (Digest).
RFC9530_NAMES = {"sha256": "sha-256", "sha512": "sha-512", "sha1": "sha", "md5": "md5", "adler32": "adler"}
RFC3230_NAMES = {"sha256": "SHA-256", "sha512": "SHA-512", "sha1": "SHA", "md5": "MD5", "adler32": "ADLER32"}
FROM_RFC9530 = {v: k for k, v in RFC9530_NAMES.items()}
FROM_RFC3230 = {v.lower(): k for k, v in RFC3230_NAMES.items()}
# The config accepts pyai's names and the HTTP spellings.
_CONFIG_NAMES = {**{n: n for n in ALGORITHMS}, **FROM_RFC9530, **FROM_RFC3230}


class Hasher(Protocol):
    """A digest being computed: hashlib's interface, as far as pyai calls it."""

    @property
    def digest_size(self) -> int: ...
    def update(self, data: "ReadableBuffer", /) -> None: ...
    def digest(self) -> bytes: ...


class Adler32:
    """zlib's Adler-32 with hashlib's interface (``update``, ``digest``, ``copy``), as the
    receive loops call hashers; ``update`` takes any buffer (a memoryview of a receive
    buffer is hashed in place) and the GIL is released while a large one is summed."""

    name = "adler32"
    digest_size = 4
    block_size = 1

    def __init__(self, data: "ReadableBuffer" = b"") -> None:
        self._value: int = _adler32(data)

    def update(self, data: "ReadableBuffer") -> None:
        self._value = _adler32(data, self._value)

    def digest(self) -> bytes:
        return self._value.to_bytes(4, "big")

    def hexdigest(self) -> str:
        return f"{self._value:08x}"

    def copy(self) -> "Adler32":
        twin = Adler32()
        twin._value = self._value
        return twin


def new(name: str) -> Hasher:
    """A fresh hasher of the algorithm ``name``."""
    return Adler32() if name == "adler32" else hashlib.new(name)


DIGEST_SIZES = {name: new(name).digest_size for name in ALGORITHMS}


def parse_config_algorithms(text: str) -> Tuple[str, ...]:
    """``[archive] checksum``: a comma-separated list of algorithm names, or ``none``
    (an empty tuple); the order is kept, without repeats."""
    names: List[str] = []
    for part in text.split(","):
        word = part.strip().lower()
        if not word:
            continue
        if word == "none":
            if len(text.split(",")) > 1:
                raise ValueError("none cannot be listed with algorithms")
            return ()
        if word not in _CONFIG_NAMES:
            raise ValueError(f"expected algorithms out of {', '.join(ALGORITHMS)}, or none")
        if _CONFIG_NAMES[word] not in names:
            names.append(_CONFIG_NAMES[word])
    if not names:
        raise ValueError(f"expected algorithms out of {', '.join(ALGORITHMS)}, or none")
    return tuple(names)


# What one core spends on a GiB of each, measured (thread CPU time) the first time lanes
# are split: the digests are spread so that the slowest has a lane of its own.
_PROBE = 256 << 10


@functools.cache
def cost(name: str) -> float:
    """Seconds of one core per GiB for ``name`` on this machine (measured once per process)."""
    hasher, data = new(name), bytes(_PROBE)
    hasher.update(data)  # warm: the first call may set up tables
    started = time.thread_time()
    for _ in range(4):
        hasher.update(data)
    return max(time.thread_time() - started, 1e-9) / (4 * _PROBE) * (1 << 30)


def lanes(names: Sequence[str], cores: Optional[int] = None) -> List[Tuple[str, ...]]:
    """``names`` split into lanes, each to be hashed on a thread of its own: one lane each
    when there are as many cores, else as many lanes as cores, the costliest first, each
    into the lane with the least work so far (on 2 cores: md5 alone, sha256 and adler32 together)."""
    cores = cores or _cores()
    if len(names) <= cores:
        return [(name,) for name in names]
    load = [0.0] * cores
    split: List[List[str]] = [[] for _ in range(cores)]
    for name in sorted(names, key=cost, reverse=True):
        lightest = load.index(min(load))
        split[lightest].append(name)
        load[lightest] += cost(name)
    return [tuple(name for name in names if name in lane) for lane in split if lane]


def _cores() -> int:
    """The cores this process may run on (its affinity, which a container or taskset narrows)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def digesting(names: Sequence[str]) -> Beside:
    """The digests ``names`` of one body: ``update(data)`` with its bytes in order,
    ``digests()`` for ``{name: digest}`` (``names`` order); beside the caller, on threads of
    their own, once the bytes are many and there is more than one (``pyai.archive.beside``)."""
    return Beside({name: new(name) for name in names}, _lanes_of(tuple(names)) if len(names) > 1 else [names])


@functools.lru_cache(maxsize=64)
def _lanes_of(names: Tuple[str, ...]) -> List[Tuple[str, ...]]:
    """``lanes(names)``, once per process and set of names: every PUT asks (a small one too)."""
    return lanes(names)


def compute(
    read: Callable[[int], bytes], names: Sequence[str], on_block: Optional[Callable[[int], object]] = None
) -> Dict[str, bytes]:
    """``{name: digest}`` of everything ``read(size)`` gives until it gives nothing."""
    running = digesting(names)
    while True:
        data = read(1 << 20)
        if not data:
            return running.digests()
        running.update(data)
        if on_block is not None:
            on_block(len(data))


def encode(name: str, digest: bytes) -> str:
    """The stored form of one checksum: ``sha256:<hex>``."""
    return f"{name}:{digest.hex()}"


def decode(text: str) -> Optional[Tuple[str, bytes]]:
    """``(name, digest bytes)`` from the stored form of one checksum, or None when it is not one."""
    name, _, hexdigest = text.strip().partition(":")
    if name not in DIGEST_SIZES:
        return None
    try:
        digest = bytes.fromhex(hexdigest)
    except ValueError:
        return None
    return (name, digest) if len(digest) == DIGEST_SIZES[name] else None


def encode_set(digests: Mapping[str, bytes]) -> str:
    """The stored form of several checksums: ``sha256:<hex> md5:<hex>`` (in ALGORITHMS order)."""
    return " ".join(encode(name, digests[name]) for name in ALGORITHMS if name in digests)


def decode_set(text: str) -> Dict[str, bytes]:
    """``{name: digest}`` from the stored form (one checksum or several); words that are
    not a checksum pyai knows are skipped, so a newer version's algorithms do not hide the rest."""
    found: Dict[str, bytes] = {}
    for word in text.split():
        checksum = decode(word)
        if checksum is not None:
            found.setdefault(*checksum)
    return found


def strongest(digests: Mapping[str, bytes]) -> Optional[Tuple[str, bytes]]:
    """The first strong ``(name, digest)`` of ``digests`` (STRONG order), or None."""
    for name in STRONG:
        if name in digests:
            return name, digests[name]
    return None


def mismatch(expected: Mapping[str, bytes], computed: Mapping[str, bytes]) -> Optional[str]:
    """The first algorithm whose client digest differs from the body's, or None."""
    for name, digest in expected.items():
        if computed[name] != digest:
            return name
    return None
