"""Configuration: one INI file, overridden by environment variables, overridden by flags.

The file is ``-c/--config``, else ``$ARCHIVEINTERFACE_CONFIG``, else
``~/.pacifica-archiveinterface/config.ini`` (when it exists).  It keeps the
original sections (``[posix]``, ``[hpss]``, ``[hsm_sideband]``) and adds
``[archive]``, ``[auth]``, ``[tape]`` and ``[ops]``.  Every setting is declared once, in ``SETTINGS``: its
section and option, environment variable, parser, default and help.  The validation in
``load()`` (which raises ConfigError with one line an operator can act on) and the configuration
page's table (``settings_table()``) come from it; the typed ``Config`` is checked against it.
A section, option or PAI_* variable that is no setting is an error too, with the
nearest known name suggested (``unknown_names``): a typo must not be ignored.
``check()`` lists every problem without creating anything (check-config, reloads).
"""

import configparser
import dataclasses
import difflib
import ipaddress
import os
import re
import types
from typing import Any, Callable, FrozenSet, List, Optional, Tuple, get_type_hints

from pyai.archive.checksums import DEFAULT_CONFIG as DEFAULT_CHECKSUMS
from pyai.archive.checksums import parse_config_algorithms
from pyai.dirs import make_dirs
from pyai.errors import ConfigError

BACKENDS = ("posix", "hpss", "hsmsideband")
DEFAULT_CONFIG_IN_HOME = os.path.join(".pacifica-archiveinterface", "config.ini")


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


_SIZE = re.compile(r"([0-9]+)\s*([kmgt]?)i?b?", re.IGNORECASE)


def _size(text: str) -> int:
    """Bytes, with an optional binary suffix: ``10G`` = 10 GiB.  0 means unlimited."""
    match = _SIZE.fullmatch(text.strip())
    if not match:
        raise ValueError("expected a size such as 1048576, 512M or 10G")
    power = " kmgt".index(match.group(2).lower() or " ")
    return int(match.group(1)) * 1024**power


def _seconds(text: str) -> float:
    value = float(text)
    if value < 0:
        raise ValueError("expected a non-negative number of seconds")
    return value


def _positive_seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError("expected a number of seconds above 0")
    return value


def _class_of_service(text: str) -> int:
    value = int(text)
    if not 0 <= value < 2**32:
        raise ValueError("expected an HPSS class of service id (0: none)")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("expected a whole number of at least 1")
    return value


def _paths(text: str) -> Tuple[str, ...]:
    """Directories separated by ':' or newlines; each made absolute and resolved."""
    parts = [p.strip() for p in re.split(r"[:\n]", text) if p.strip()]
    return tuple(os.path.realpath(os.path.expanduser(p)) for p in parts)


def _optional_path(text: str) -> str:
    """A file name made absolute (workers may not share the start-up directory); "" for none."""
    text = text.strip()
    return os.path.abspath(os.path.expanduser(text)) if text else ""


def _backend(text: str) -> str:
    name = text.strip().lower()
    if name not in BACKENDS:
        raise ValueError(f"expected one of {', '.join(BACKENDS)}")
    return name


def _real_path(text: str) -> str:
    """A directory made absolute and resolved, so every process and check sees one name for it."""
    return os.path.realpath(os.path.expanduser(text))


def _jwt_issuers(text: str) -> Tuple[Tuple[str, str], ...]:
    """``<issuer URL> <base path>`` pairs, comma-separated (pyai.web.wlcg_tokens checks the rest)."""
    pairs = []
    for item in text.split(","):
        fields = item.split()
        if not fields:
            continue
        if len(fields) != 2:
            raise ValueError("expected '<issuer URL> <base path>' pairs, separated by commas")
        url, base = fields
        if not url.startswith("https://"):
            raise ValueError(f"an issuer is an https URL, not {url!r}")
        if not base.startswith("/"):
            raise ValueError(f"a base path is absolute, not {base!r}")
        pairs.append((url, base))
    return tuple(pairs)


def _names(text: str) -> Tuple[str, ...]:
    """Comma-separated names, each without spaces."""
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    for name in names:
        if " " in name:
            raise ValueError(f"a name holds no space: {name!r} (separate names with commas)")
    return names


def _remotes(text: str) -> Tuple[str, ...]:
    """Where third-party copies may connect, comma-separated: host names, ``.domain`` suffixes,
    addresses and CIDR networks (lower case; pyai.tpc.remotes reads them)."""
    entries = []
    for entry in (item.strip().lower() for item in text.split(",")):
        if not entry:
            continue
        try:
            ipaddress.ip_network(entry.strip("[]"), strict=False)
        except ValueError:
            name = entry[1:] if entry.startswith(".") else entry
            if not _HOST_NAME.fullmatch(name):
                raise ValueError(
                    f"{entry!r} is neither a host name, a .domain, an address nor a network (CIDR)"
                ) from None
        entries.append(entry.strip("[]"))
    return tuple(entries)


_HOST_NAME = re.compile(r"(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*")


_HEADER_NAME = re.compile(r"[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*")


def _header_name(text: str) -> str:
    """A request header's name, "" for none: letters, digits and inner '-' (a name with '_' never
    reaches pyai: its server drops such fields, as nginx does)."""
    name = text.strip()
    if name and not _HEADER_NAME.fullmatch(name):
        raise ValueError("expected a header name such as X-SSL-Client-DN (letters, digits and -)")
    return name


def _networks(text: str) -> Tuple[str, ...]:
    """IP addresses or networks (CIDR), separated by commas or spaces; each as ``ipaddress`` writes it."""
    networks = []
    for item in re.split(r"[,\s]+", text.strip()):
        if not item:
            continue
        try:
            networks.append(str(ipaddress.ip_network(item)))
        except ValueError as exc:
            raise ValueError(f"{item!r} is no IP address or network ({exc})") from None
    return tuple(networks)


DURABILITY = ("auto", "fsync", "journal", "syncfs")  # see pyai.backends.flusher
NAMESPACES = ("ids", "paths")  # see pyai.archive.ids


def _namespace(text: str) -> str:
    name = text.strip().lower()
    if name not in NAMESPACES:
        raise ValueError(f"expected one of {', '.join(NAMESPACES)}")
    return name


def _durability(text: str) -> str:
    name = text.strip().lower()
    if name not in DURABILITY:
        raise ValueError(f"expected one of {', '.join(DURABILITY)}")
    return name


def _transfer_log(text: str) -> str:
    """``-`` (stderr), ``off``, or a file name made absolute (the workers open it after the fork)."""
    text = text.strip()
    if text in ("-", "off"):
        return text
    if not text:
        raise ValueError("expected -, off or a file name")
    return os.path.abspath(os.path.expanduser(text))


def _checksums(text: str) -> Tuple[str, ...]:
    """Algorithm names, () for ``none`` (typed here: the field's annotation comes from it)."""
    return parse_config_algorithms(text)


@dataclasses.dataclass(frozen=True)
class Setting:
    """One setting: where it is read from, how it is checked, and what the configuration page says of it."""

    name: str  # the attribute of Config
    section: str  # [section] of the INI file
    option: str  # option in that section
    env: str  # environment variable, beats the file
    parse: Callable[[str], Any]  # text -> value, or ValueError saying what was expected; returns the field's type
    default: str  # text, parsed like any other source
    help: str  # one line of Markdown: the settings table's "meaning"
    flag: str = ""  # the command-line flag that beats the environment, if any
    default_note: str = ""  # shown after the default in the settings table, e.g. "unlimited"


# Every setting, once: a table (the validation and the settings table come from it; Config follows it).
SETTINGS = (
    Setting(
        "backend",
        "archive",
        "backend",
        "PAI_BACKEND_TYPE",
        _backend,
        "posix",
        flag="-t",
        help="storage backend: `posix`, `hpss` (see [HPSS](#hpss)) or `hsmsideband` "
        "(see [Oracle HSM](#oracle-hsm-sam-qfs-sideband))",
    ),
    Setting(
        "prefix",
        "archive",
        "prefix",
        "PAI_PREFIX",
        _real_path,
        "/tmp",
        flag="--prefix",
        default_note="the original's",
        help="where files are stored; created if missing",
    ),
    Setting(
        "allow_overwrite",
        "archive",
        "allow_overwrite",
        "PAI_ALLOW_OVERWRITE",
        _bool,
        "false",
        help="`true`: PUT to an existing id replaces it atomically instead of 409",
    ),
    Setting(
        "allow_multipart",
        "archive",
        "allow_multipart",
        "PAI_ALLOW_MULTIPART",
        _bool,
        "false",
        help="`true`: a PUT whose `Content-Type` is `multipart/form-data` (`curl -F`) is stored as sent, "
        "envelope and all, instead of 415",
    ),
    Setting(
        "namespace",
        "archive",
        "namespace",
        "PAI_NAMESPACE",
        _namespace,
        "ids",
        help="`ids`: a URL is `/<id>`; `paths`: also `/<a>/<b>/<name>`, with collections (MKCOL, MOVE, "
        "listings; see [Paths](#paths))",
    ),
    Setting(
        "max_listing",
        "archive",
        "max_listing",
        "PAI_MAX_LISTING",
        _positive_int,
        "100000",
        help="most members a `PROPFIND` `Depth: 1` lists (more: 507) under `namespace = paths`",
    ),
    Setting(
        "patch_roots",
        "archive",
        "patch_roots",
        "PAI_PATCH_ROOTS",
        _paths,
        "",
        help="directories (`:`-separated) PATCH may move files from, besides the prefix",
    ),
    Setting(
        "max_body_size",
        "archive",
        "max_body_size",
        "PAI_MAX_BODY_SIZE",
        _size,
        "0",
        default_note="unlimited",
        help="largest upload, bytes or `512M`, `10G`, `2T`",
    ),
    Setting(
        "receive_timeout",
        "archive",
        "receive_timeout",
        "PAI_RECEIVE_TIMEOUT",
        _seconds,
        "60",
        help="seconds an upload may go without a byte before 408 (0: no limit)",
    ),
    Setting(
        "min_body_rate",
        "archive",
        "min_body_rate",
        "PAI_MIN_BODY_RATE",
        _size,
        "1K",
        help="bytes/s an upload must average once `receive_timeout` seconds have passed (0: none)",
    ),
    Setting(
        "head_timeout",
        "archive",
        "head_timeout",
        "PAI_HEAD_TIMEOUT",
        _seconds,
        "30",
        help="seconds a client may take to send a whole request head (408 after)",
    ),
    Setting(
        "send_timeout",
        "archive",
        "send_timeout",
        "PAI_SEND_TIMEOUT",
        _seconds,
        "60",
        help="seconds a client may take nothing of an answer before it is dropped",
    ),
    Setting(
        "sweep_on_start",
        "archive",
        "sweep_on_start",
        "PAI_SWEEP_ON_START",
        _bool,
        "true",
        help="remove temporary files of interrupted uploads at start-up",
    ),
    Setting(
        "sweep_min_age",
        "archive",
        "sweep_min_age",
        "PAI_SWEEP_MIN_AGE",
        _seconds,
        "600",
        help="seconds a temporary file must be old before a sweep may remove it (and it must not be locked)",
    ),
    Setting(
        "sweep_interval",
        "archive",
        "sweep_interval",
        "PAI_SWEEP_INTERVAL",
        _seconds,
        "3600",
        default_note="an hour; 0: only at start-up",
        help="seconds between two sweeps by the running service (the start, with `sweep_on_start`, and a "
        "worker's crash bring the next one forward to `sweep_min_age` after them)",
    ),
    Setting(
        "drain_delay",
        "ops",
        "drain_delay",
        "PAI_DRAIN_DELAY",
        _seconds,
        "5",
        help="seconds a TERM leaves the instance serving while `/readyz` says 503, so load balancers "
        "move away before it stops",
    ),
    Setting(
        "stage_workers",
        "archive",
        "stage_workers",
        "PAI_STAGE_WORKERS",
        _positive_int,
        "4",
        help="stages (HPSS) and recalls (HSM) a worker process runs at once; more wait their turn",
    ),
    Setting(
        "checksums",
        "archive",
        "checksum",
        "PAI_CHECKSUM",
        _checksums,
        DEFAULT_CHECKSUMS,
        help="digests computed while a PUT is received and stored with the file, comma-separated: `sha256`, "
        "`sha512`, `sha1`, `md5`, `adler32`, or `none` (see [Integrity](#integrity))",
    ),
    Setting(
        "digest_compute_max",
        "archive",
        "digest_compute_max",
        "PAI_DIGEST_COMPUTE_MAX",
        _size,
        "4G",
        help="largest file whose missing digest a HEAD/GET asking for it computes (once, then kept); "
        "larger ones answer without it (see [Integrity](#integrity))",
    ),
    Setting(
        "durability",
        "archive",
        "durability",
        "PAI_DURABILITY",
        _durability,
        "auto",
        help="how a PUT is made durable before its 201: `auto`, `fsync`, `journal` or `syncfs` "
        "(see [Durability](#durability))",
    ),
    Setting(
        "auth_tokens_file",
        "auth",
        "tokens_file",
        "PAI_AUTH_TOKENS_FILE",
        _optional_path,
        "",
        flag="--tokens-file",
        default_note="no authentication",
        help="bearer tokens, `<scope> <token> [name]` lines, the scope `ro`, `rw` or `metrics` "
        "(see [Authentication](#authentication-optional))",
    ),
    Setting(
        "auth_jwt_issuers",
        "auth",
        "jwt_issuers",
        "PAI_AUTH_JWT_ISSUERS",
        _jwt_issuers,
        "",
        default_note="none",
        help="WLCG token issuers, `<issuer URL> <base path>` pairs separated by commas: their tokens' "
        "storage scopes are read below the base path (see [WLCG tokens](#wlcg-tokens))",
    ),
    Setting(
        "auth_jwt_audiences",
        "auth",
        "jwt_audiences",
        "PAI_AUTH_JWT_AUDIENCES",
        _names,
        "",
        help="the audiences (`aud`) a WLCG token must name one of, comma-separated; needed with `jwt_issuers`",
    ),
    Setting(
        "auth_jwt_ca_file",
        "auth",
        "jwt_ca_file",
        "PAI_AUTH_JWT_CA_FILE",
        _optional_path,
        "",
        default_note="the system's",
        help="the CA certificates (PEM) the issuers' https certificates are checked against",
    ),
    Setting(
        "auth_token_secret_file",
        "auth",
        "token_secret_file",
        "PAI_AUTH_TOKEN_SECRET_FILE",
        _optional_path,
        "",
        default_note="no tokens issued",
        help="a secret of at least 32 bytes (mode `0600` or `0640`) that signs the tokens pyai issues to the "
        "X.509 jobs of its token holders (gfal2's and FTS's macaroon requests, see "
        "[Tokens for X.509 jobs](#tokens-for-x509-jobs)); needs `tokens_file`, `jwt_issuers` or `dn_header`",
    ),
    Setting(
        "auth_dn_header",
        "auth",
        "dn_header",
        "PAI_AUTH_DN_HEADER",
        _header_name,
        "",
        default_note="no client certificates",
        help="the request header a TLS front end (nginx) passes the subject DN of the client certificate it "
        "verified in, e.g. `X-SSL-Client-DN`; needs `dn_proxies` and `gridmap_file` "
        "(see [X.509 client certificates](#x509-client-certificates))",
    ),
    Setting(
        "auth_dn_proxies",
        "auth",
        "dn_proxies",
        "PAI_AUTH_DN_PROXIES",
        _networks,
        "",
        help="the addresses or networks (`127.0.0.1`, `10.0.0.0/24`, `::1`; comma-separated) of the front ends "
        "whose `dn_header` is believed: from any other peer it is ignored",
    ),
    Setting(
        "auth_gridmap_file",
        "auth",
        "gridmap_file",
        "PAI_AUTH_GRIDMAP_FILE",
        _optional_path,
        "",
        help='the DNs a `dn_header` may name, `"<DN>" <scope> [name]` lines, the scope `ro` or `rw`, the DN '
        "in RFC 2253 (`CN=alice,O=Example,C=CH`) or slash form (`/C=CH/O=Example/CN=alice`)",
    ),
    Setting(
        "use_id2filename",
        "posix",
        "use_id2filename",
        "PAI_USE_ID2FILENAME",
        _bool,
        "false",
        help="integer ids in the nested hex layout",
    ),
    Setting(
        "hpss_user",
        "hpss",
        "user",
        "PAI_HPSS_USER",
        str,
        "hpss.unix",
        default_note="the original's",
        help="principal to log in as (UNIX mechanism, client credentials)",
    ),
    Setting(
        "hpss_auth",
        "hpss",
        "auth",
        "PAI_HPSS_AUTH",
        str,
        "/var/hpss/etc/hpss.unix.keytab",
        default_note="the original's",
        help="keytab file",
    ),
    Setting(
        "hpss_sitename",
        "hpss",
        "sitename",
        "PAI_HPSS_SITENAME",
        str,
        "example.com",
        help="site of the root core server (`hpss_LookupRootCS`)",
    ),
    Setting(
        "hpss_accept_latency",
        "hpss",
        "accept_latency",
        "PAI_HPSS_ACCEPT_LATENCY",
        _seconds,
        "5",
        help="slowest acceptable core-server ping, seconds",
    ),
    Setting(
        "hpss_ping_interval",
        "hpss",
        "ping_interval",
        "PAI_HPSS_PING_INTERVAL",
        _seconds,
        "1",
        help="one ping answers for a worker's requests this long",
    ),
    Setting(
        "hpss_stage_timeout",
        "hpss",
        "stage_timeout",
        "PAI_HPSS_STAGE_TIMEOUT",
        _seconds,
        "60",
        help="how long GET waits for a file on tape; `0`: 503 at once",
    ),
    Setting(
        "hpss_retry_after",
        "hpss",
        "retry_after",
        "PAI_HPSS_RETRY_AFTER",
        _seconds,
        "30",
        help="`Retry-After` seconds of those 503s",
    ),
    Setting(
        "hpss_quota_cos",
        "hpss",
        "quota_cos",
        "PAI_HPSS_QUOTA_COS",
        _class_of_service,
        "0",
        default_note="none",
        help="under `namespace = paths`, the class of service whose capacity (`hpss_Statfs`) a collection's "
        "RFC 4331 quota properties report; `0`: they are left out",
    ),
    Setting(
        "sideband_prefix",
        "hsm_sideband",
        "sam_qfs_prefix",
        "PAI_SAM_QFS_PREFIX",
        str,
        "/data/pacifica/test/",
        default_note="the original's",
        help="the archive directory as the sideband database names it (the original's rule: see docs/storage.md)",
    ),
    Setting(
        "sideband_host",
        "hsm_sideband",
        "host",
        "PAI_SIDEBAND_HOST",
        str,
        "127.0.0.1",
        help="host of the sideband database",
    ),
    Setting(
        "sideband_port", "hsm_sideband", "port", "PAI_SIDEBAND_PORT", int, "3306", help="port of the sideband database"
    ),
    Setting(
        "sideband_schema",
        "hsm_sideband",
        "schema",
        "PAI_SIDEBAND_SCHEMA",
        str,
        "samdb",
        help="schema of the sideband database",
    ),
    Setting(
        "sideband_user",
        "hsm_sideband",
        "user",
        "PAI_SIDEBAND_USER",
        str,
        "root",
        help="database user; it needs SELECT on sam_path, sam_file and sam_inode only",
    ),
    Setting(
        "sideband_password", "hsm_sideband", "password", "PAI_SIDEBAND_PASSWORD", str, "", help="password of that user"
    ),
    Setting(
        "sideband_connect_timeout",
        "hsm_sideband",
        "connect_timeout",
        "PAI_SIDEBAND_CONNECT_TIMEOUT",
        _seconds,
        "2",
        help="seconds: a database slower to accept a connection is down (HEAD/POST answer 503)",
    ),
    Setting(
        "sideband_query_timeout",
        "hsm_sideband",
        "query_timeout",
        "PAI_SIDEBAND_QUERY_TIMEOUT",
        _seconds,
        "5",
        help="seconds one query may take (HEAD/POST answer 503 after)",
    ),
    Setting(
        "sideband_retry_after",
        "hsm_sideband",
        "retry_after",
        "PAI_SIDEBAND_RETRY_AFTER",
        _seconds,
        "10",
        help="the `Retry-After` of the 503 answers while the database is down",
    ),
    # -- the WLCG Tape REST API (pyai.tape; see docs/grid.md, "Tape REST API") --------------------
    Setting(
        "tape_sitename",
        "tape",
        "sitename",
        "PAI_TAPE_SITENAME",
        str,
        "pyai",
        help="the `sitename` the discovery document names (and whose `targetedMetadata` is read)",
    ),
    Setting(
        "tape_endpoint_uri",
        "tape",
        "endpoint_uri",
        "PAI_TAPE_ENDPOINT_URI",
        str,
        "",
        default_note="from the request's Host",
        help="the API's base URI in the discovery document, e.g. `https://archive.example.org/api/v1`",
    ),
    Setting(
        "tape_store",
        "tape",
        "store",
        "PAI_TAPE_STORE",
        str,
        "",
        default_note="SQLite in `state_dir`",
        help="where stage requests are kept: `mysql://user:password@host:port/db` "
        "(or `mysql://user:password@localhost/db?unix_socket=/path`) to share them between instances",
    ),
    Setting(
        "tape_state_dir",
        "tape",
        "state_dir",
        "PAI_TAPE_STATE_DIR",
        _optional_path,
        "",
        default_note="`<prefix>/.pyai-state`; hpss: under `~/.pacifica-archiveinterface`",
        help="the directory of the SQLite store (no id can name it)",
    ),
    Setting(
        "tape_max_files",
        "tape",
        "max_files",
        "PAI_TAPE_MAX_FILES",
        _positive_int,
        "1000",
        help="most files one stage request may name (more: 400 too many files)",
    ),
    Setting(
        "tape_max_open_requests",
        "tape",
        "max_open_requests",
        "PAI_TAPE_MAX_OPEN_REQUESTS",
        _positive_int,
        "100",
        help="stage requests one owner (token) may have unfinished at once (more: 429 with Retry-After)",
    ),
    Setting(
        "tape_max_kept_files",
        "tape",
        "max_kept_files",
        "PAI_TAPE_MAX_KEPT_FILES",
        _positive_int,
        "100000",
        help="files of one owner's (token's) requests the store keeps, finished ones until they expire "
        "(more: 429 with Retry-After)",
    ),
    Setting(
        "tape_request_expiry",
        "tape",
        "request_expiry",
        "PAI_TAPE_REQUEST_EXPIRY",
        _positive_seconds,
        "86400",
        help="seconds a finished stage request is kept after its last file finished (or its last pin ended); "
        "then `404`, its rows deleted",
    ),
    Setting(
        "tape_max_archiveinfo",
        "tape",
        "max_archiveinfo",
        "PAI_TAPE_MAX_ARCHIVEINFO",
        _positive_int,
        "1000",
        help="most paths one archiveinfo answers for (the rest are left out, not refused)",
    ),
    Setting(
        "tape_default_lifetime",
        "tape",
        "default_lifetime",
        "PAI_TAPE_DEFAULT_LIFETIME",
        _seconds,
        "86400",
        help="seconds a staged file stays pinned when the request gives no `diskLifetime`",
    ),
    Setting(
        "tape_max_lifetime",
        "tape",
        "max_lifetime",
        "PAI_TAPE_MAX_LIFETIME",
        _seconds,
        "604800",
        help="longest pin in seconds (a longer `diskLifetime` is shortened to it)",
    ),
    Setting(
        "tape_workers",
        "tape",
        "workers",
        "PAI_TAPE_WORKERS",
        _positive_int,
        "64",
        help="files each worker process stages and watches at once for the API (the stages themselves "
        "share `stage_workers`)",
    ),
    Setting(
        "tape_lease",
        "tape",
        "lease",
        "PAI_TAPE_LEASE",
        _seconds,
        "60",
        help="seconds a worker's claim on a file lasts unrenewed: after a crash, others take it over then",
    ),
    Setting(
        "tape_max_poll_interval",
        "tape",
        "max_poll_interval",
        "PAI_TAPE_MAX_POLL_INTERVAL",
        _seconds,
        "30",
        help="longest pause between two looks at a staging file (the pauses grow up to it)",
    ),
    Setting(
        "tape_stage_timeout",
        "tape",
        "stage_timeout",
        "PAI_TAPE_STAGE_TIMEOUT",
        _seconds,
        "172800",
        help="seconds after which a file still not on disk is FAILED",
    ),
    Setting(
        "tpc_remotes",
        "tpc",
        "remotes",
        "PAI_TPC_REMOTES",
        _remotes,
        "",
        default_note="third-party copy off",
        help="where `COPY` (HTTP third-party copy, see [Third-party copy](#third-party-copy)) may connect: "
        "host names, `.domain` suffixes, addresses and CIDR networks, comma-separated; loopback and "
        "link-local addresses only when listed as addresses or networks",
    ),
    Setting(
        "tpc_max_copies",
        "tpc",
        "max_copies",
        "PAI_TPC_MAX_COPIES",
        _positive_int,
        "8",
        help="third-party copies one worker process runs at once (more: 503 with `Retry-After`)",
    ),
    Setting(
        "tpc_ca_file",
        "tpc",
        "ca_file",
        "PAI_TPC_CA_FILE",
        _optional_path,
        "",
        default_note="the system's",
        help="the CA certificates (PEM) a third-party copy checks https remotes against",
    ),
    Setting(
        "tpc_timeout",
        "tpc",
        "timeout",
        "PAI_TPC_TIMEOUT",
        _positive_seconds,
        "60",
        help="seconds a third-party copy waits for the remote (to connect, to answer, for its next bytes) "
        "before it fails",
    ),
    Setting(
        "transfer_log",
        "ops",
        "transfer_log",
        "PAI_TRANSFER_LOG",
        _transfer_log,
        "-",
        default_note="stderr",
        help="the JSON transfer log, one line per request: `-` (stderr), a file (appended to; its directory "
        "must exist; reopened on USR1) or `off` (see [Transfer log](#transfer-log))",
    ),
)


# PAI_* variables read elsewhere than through SETTINGS, and who reads them.  Any other
# PAI_* variable in the environment is a typo and stops the start (see unknown_names).
OTHER_ENVIRONMENT = {
    "PAI_BIND": "gunicorn's bind (pyai/server/gunicorn_conf.py)",
    "PAI_WORKERS": "gunicorn's workers (pyai/server/gunicorn_conf.py)",
    "PAI_THREADS": "gunicorn's threads (pyai/server/gunicorn_conf.py)",
    "PAI_ACCESS_LOG": "gunicorn's accesslog (pyai/server/gunicorn_conf.py)",
    "PAI_LOG_LEVEL": "gunicorn's loglevel (pyai/server/gunicorn_conf.py)",
}
ENV_PREFIX = "PAI_"


def _value_type(parse):
    """What a parser returns, the annotation of its Config field: a type used as parser, or the return hint."""
    return parse if isinstance(parse, type) else get_type_hints(parse)["return"]


@dataclasses.dataclass(frozen=True)
class Config:
    """The validated settings of one archive service: one field per setting of SETTINGS, in its
    order and of its parser's type (a test in tests/unit/test_config.py holds the two together)."""

    backend: str
    prefix: str
    allow_overwrite: bool
    allow_multipart: bool
    namespace: str
    max_listing: int
    patch_roots: Tuple[str, ...]
    max_body_size: int
    receive_timeout: float
    min_body_rate: int
    head_timeout: float
    send_timeout: float
    sweep_on_start: bool
    sweep_min_age: float
    sweep_interval: float
    drain_delay: float
    stage_workers: int
    checksums: Tuple[str, ...]
    digest_compute_max: int
    durability: str
    auth_tokens_file: str
    auth_jwt_issuers: Tuple[Tuple[str, str], ...]
    auth_jwt_audiences: Tuple[str, ...]
    auth_jwt_ca_file: str
    auth_token_secret_file: str
    auth_dn_header: str
    auth_dn_proxies: Tuple[str, ...]
    auth_gridmap_file: str
    use_id2filename: bool
    hpss_user: str
    hpss_auth: str
    hpss_sitename: str
    hpss_accept_latency: float
    hpss_ping_interval: float
    hpss_stage_timeout: float
    hpss_retry_after: float
    hpss_quota_cos: int
    sideband_prefix: str
    sideband_host: str
    sideband_port: int
    sideband_schema: str
    sideband_user: str
    sideband_password: str
    sideband_connect_timeout: float
    sideband_query_timeout: float
    sideband_retry_after: float
    tape_sitename: str
    tape_endpoint_uri: str
    tape_store: str
    tape_state_dir: str
    tape_max_files: int
    tape_max_open_requests: int
    tape_max_kept_files: int
    tape_request_expiry: float
    tape_max_archiveinfo: int
    tape_default_lifetime: float
    tape_max_lifetime: float
    tape_workers: int
    tape_lease: float
    tape_max_poll_interval: float
    tape_stage_timeout: float
    tpc_remotes: Tuple[str, ...]
    tpc_max_copies: int
    tpc_ca_file: str
    tpc_timeout: float
    transfer_log: str
    config_file: str = ""  # the INI file read, "" for none
    defaulted: FrozenSet[str] = frozenset()  # the names of the settings no source gave, which took their default


def _markdown_row(cells):
    return "|" + "|".join(f" {cell} " if cell else " " for cell in cells) + "|"


def _shown_default(setting):
    if not setting.default:
        return f"(none: {setting.default_note})" if setting.default_note else "(none)"
    shown = f"`{setting.default}`"
    return f"{shown} ({setting.default_note})" if setting.default_note else shown


def settings_table():
    """The configuration page's settings table, in Markdown, one row per setting."""
    header = ["section / option", "environment", "flag", "default", "meaning"]
    lines = [_markdown_row(header), _markdown_row(["---"] * len(header))]
    for setting in SETTINGS:
        flag = f"`{setting.flag}`" if setting.flag else ""
        lines.append(
            _markdown_row(
                [
                    f"`[{setting.section}] {setting.option}`",
                    f"`{setting.env}`",
                    flag,
                    _shown_default(setting),
                    setting.help,
                ]
            )
        )
    return "\n".join(lines) + "\n"


# The prefix the gunicorn master checked at start-up (pyai.server.serve.prepare_archive).
# Its workers inherit this at the fork and do not check again: a prefix that has
# turned read-only or gone away since then fails requests (5xx), not the boot of
# a replacement worker, which would stop the whole service; nor is a missing
# prefix re-created empty.
checked_prefix: Optional[str] = None


def config_path(explicit=None, environ=os.environ):
    """The INI file to read, or "" when none is configured and the default is absent."""
    if explicit:
        return explicit
    if environ.get("ARCHIVEINTERFACE_CONFIG"):
        return environ["ARCHIVEINTERFACE_CONFIG"]
    home = environ.get("HOME") or os.path.expanduser("~")
    default = os.path.join(home, DEFAULT_CONFIG_IN_HOME)
    return default if os.path.exists(default) else ""


def _read_ini(path):
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with open(path, encoding="utf-8") as handle:
            parser.read_file(handle)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except configparser.Error as exc:
        raise ConfigError(f"config file {path} is not valid INI: {exc.message.splitlines()[0]}") from None
    return parser


def _suggest(word, known, shown=lambda name: name):
    """`` (did you mean X?)`` for the known name nearest to ``word``, or ""."""
    match = difflib.get_close_matches(word, list(known), n=1)
    return f" (did you mean {shown(match[0])}?)" if match else ""


def unknown_names(ini, path, environ):
    """One line per section or option of ``ini`` (read from ``path``) and per PAI_* variable
    of ``environ`` that is no setting: a typo that would otherwise be ignored."""
    problems = []
    options: dict = {}
    for setting in SETTINGS:
        options.setdefault(setting.section, set()).add(setting.option)
    if ini is not None:
        every_option = set().union(*options.values())
        for option in ini.defaults():  # [DEFAULT] lends its options to every section
            if option not in every_option:
                problems.append(f"{path}: [DEFAULT] {option} is not a setting{_suggest(option, every_option)}")
        for section in ini.sections():
            if section not in options:
                hint = _suggest(section, options, lambda name: f"[{name}]")
                problems.append(f"{path}: [{section}] is not a section{hint}")
                continue
            for option in ini.options(section):
                if option in options[section] or option in ini.defaults():
                    continue
                hint = _suggest(option, options[section])
                if not hint:
                    elsewhere = [name for name, known in options.items() if option in known]
                    hint = f" (it is a setting of [{elsewhere[0]}])" if elsewhere else ""
                problems.append(f"{path}: [{section}] {option} is not a setting{hint}")
    variables = {setting.env for setting in SETTINGS} | set(OTHER_ENVIRONMENT)
    for name in sorted(environ):
        if name.startswith(ENV_PREFIX) and name not in variables:
            problems.append(f"environment variable {name} is not a setting{_suggest(name, variables)}")
    return problems


def _resolve(overrides, config_file, environ):
    """(the INI file's path, the values that parsed by name, the names that took their default,
    every problem found: unknown names first, then bad values)."""
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    path = config_path(config_file, environ)
    try:
        ini = _read_ini(path) if path else None
    except ConfigError as exc:
        return path, {}, set(), [str(exc)]
    problems = unknown_names(ini, path, environ)
    values, defaulted = {}, set()
    for setting in SETTINGS:
        raw, origin = setting.default, "default"
        if ini is not None and ini.has_option(setting.section, setting.option):
            raw, origin = ini.get(setting.section, setting.option), f"[{setting.section}] {setting.option} in {path}"
        if setting.env in environ:
            raw, origin = environ[setting.env], setting.env
        if setting.name in overrides:
            raw, origin = str(overrides[setting.name]), f"the {setting.name} given on the command line"
        if origin == "default":
            defaulted.add(setting.name)
        try:
            values[setting.name] = setting.parse(raw)
        except ValueError as exc:
            problems.append(f"bad value {raw!r} for {origin}: {exc}")
    problems.extend(_combinations(values))
    return path, values, defaulted, problems


def _combinations(values):
    """The problems of settings that parsed alone but not together."""
    problems = []
    if values.get("auth_jwt_issuers") and not values.get("auth_jwt_audiences", ()):
        problems.append("jwt_issuers needs jwt_audiences: the names a token must be meant for (its aud)")
    # (a jwt_issuers that did not parse counts as set: its own problem is told)
    authenticates = (
        values.get("auth_tokens_file") or values.get("auth_jwt_issuers", True) or values.get("auth_dn_header", True)
    )
    if values.get("auth_token_secret_file") and not authenticates:
        problems.append(
            "token_secret_file needs tokens_file, jwt_issuers or dn_header: tokens are issued to the clients "
            "authentication knows, and with it off there are none"
        )
    return problems + _dn_problems(values) + _namespace_problems(values)


def _dn_problems(values):
    """dn_header's companions: whom to believe it from, and what its DNs may do."""
    if not values.get("auth_dn_header"):
        return []
    problems = []
    # (a setting that did not parse counts as set: its own problem is told)
    if not values.get("auth_dn_proxies", True):
        problems.append(
            "dn_header needs dn_proxies: the addresses of the front ends that set it (from anyone else the "
            "header is a client's claim)"
        )
    if not values.get("auth_gridmap_file", True):
        problems.append("dn_header needs gridmap_file: the DNs it may name, each with its scope")
    return problems


def _namespace_problems(values):
    if values.get("namespace") != "paths":
        return []
    if values.get("use_id2filename"):
        return ["namespace = paths names files by path: it cannot be combined with use_id2filename (integer ids)"]
    return []


def load(overrides=None, config_file=None, environ=os.environ, prepare=True) -> Config:
    """Build the Config from the file, the environment and ``overrides`` (flag values by name).

    ConfigError (the first problem, one line) on an unknown section, option or PAI_*
    variable or a bad value.  With ``prepare`` the prefix is created if missing and
    checked for writing.
    """
    path, values, defaulted, problems = _resolve(overrides, config_file, environ)
    if problems:
        raise ConfigError(problems[0])
    config = Config(config_file=path, defaulted=frozenset(defaulted), **values)
    if prepare and config.prefix != checked_prefix:
        prepare_prefix(config.prefix)
    return config


def check(config_file=None, environ=os.environ, overrides=None, checkers=()) -> List[str]:
    """Every problem of the configuration a start would read, one line each ([] when it would
    start): unknown names, bad values, the prefix, and what ``checkers`` find.
    Creates nothing, changes nothing: safe before a reload, beside a running service.
    ``config_file``, ``environ`` and ``overrides`` are those of ``load()``; ``checkers`` are
    (setting, check) pairs of the layers above this module, run before the prefix's when the
    setting parsed (the server's: the tokens file and the transfer log, see
    ``pyai.server.serve.check_config``); a check raises ConfigError."""
    _, values, _, problems = _resolve(overrides, config_file, environ)
    parsed = types.SimpleNamespace(**values)  # what the checkers read, of the settings that parsed
    for needs, checker in (*checkers, ("prefix", _check_prefix)):
        if needs in values:
            try:
                checker(parsed)
            except ConfigError as exc:
                problems.append(str(exc))
    return problems


def _check_prefix(config):
    check_prefix(config.prefix)


def check_prefix(prefix):
    """What prepare_prefix would refuse, found without creating anything: an existing prefix
    that is not a writable directory, or a missing one whose nearest existing parent is not."""
    if os.path.exists(prefix):
        if not os.path.isdir(prefix):
            raise ConfigError(f"the archive prefix {prefix} is not a directory")
        if not os.access(prefix, os.W_OK | os.X_OK):
            raise ConfigError(f"the archive prefix {prefix} is not writable by this user")
        return
    parent = os.path.dirname(prefix)
    while not os.path.exists(parent) and parent != os.path.dirname(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ConfigError(f"cannot create the archive prefix {prefix}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot create the archive prefix {prefix}: {parent} is not writable by this user")


def prepare_prefix(prefix):
    """Create the prefix if needed (durably: each level made is synced into its parent,
    else the first files stored could vanish with it in a crash) and make sure this
    process can write in it."""
    from pyai import native  # here: it reads PYAI_IMPL once, at import; loading a config must not fix it

    try:
        if not os.path.isdir(prefix):
            make_dirs(prefix, os.mkdir, sync_dir=native.fsync_dir)
    except OSError as exc:
        raise ConfigError(f"cannot create the archive prefix {prefix}: {exc.strerror}") from None
    if not os.path.isdir(prefix):
        raise ConfigError(f"the archive prefix {prefix} is not a directory")
    if not os.access(prefix, os.W_OK | os.X_OK):
        raise ConfigError(f"the archive prefix {prefix} is not writable by this user")
