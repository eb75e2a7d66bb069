"""Configuration: one INI file, overridden by environment variables, overridden by flags.

The file is ``-c/--config``, else ``$ARCHIVEINTERFACE_CONFIG``, else
``~/.pacifica-archiveinterface/config.ini`` (when it exists).  It keeps the
original sections (``[posix]``, ``[hpss]``, ``[hsm_sideband]``) and adds
``[archive]`` and ``[auth]``.  Every setting is declared once in ``SETTINGS`` with its
section, environment variable, type and default; ``load()`` validates them all
and raises ConfigError with one line an operator can act on.
"""

import configparser
import dataclasses
import os
import re
from typing import Optional

from pyai.archive.checksums import parse_config_algorithm
from pyai.errors import ConfigError

BACKENDS = ("posix", "hpss", "hsmsideband")
DEFAULT_CONFIG_IN_HOME = os.path.join(".pacifica-archiveinterface", "config.ini")


def _bool(text):
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


_SIZE = re.compile(r"([0-9]+)\s*([kmgt]?)i?b?", re.IGNORECASE)


def _size(text):
    """Bytes, with an optional binary suffix: ``10G`` = 10 GiB.  0 means unlimited."""
    match = _SIZE.fullmatch(text.strip())
    if not match:
        raise ValueError("expected a size such as 1048576, 512M or 10G")
    power = " kmgt".index(match.group(2).lower() or " ")
    return int(match.group(1)) * 1024**power


def _seconds(text):
    value = float(text)
    if value < 0:
        raise ValueError("expected a non-negative number of seconds")
    return value


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise ValueError("expected a whole number of at least 1")
    return value


def _paths(text):
    """Directories separated by ':' or newlines; each made absolute and resolved."""
    parts = [p.strip() for p in re.split(r"[:\n]", text) if p.strip()]
    return tuple(os.path.realpath(os.path.expanduser(p)) for p in parts)


def _optional_path(text):
    """A file name made absolute (workers may not share the start-up directory); "" for none."""
    text = text.strip()
    return os.path.abspath(os.path.expanduser(text)) if text else ""


def _backend(text):
    name = text.strip().lower()
    if name not in BACKENDS:
        raise ValueError(f"expected one of {', '.join(BACKENDS)}")
    return name


@dataclasses.dataclass(frozen=True)
class Setting:
    name: str  # attribute of Config
    section: str
    option: str
    env: str
    parse: object
    default: str


SETTINGS = (
    Setting("backend", "archive", "backend", "PAI_BACKEND_TYPE", _backend, "posix"),
    Setting("prefix", "archive", "prefix", "PAI_PREFIX", str, "/tmp"),
    Setting("allow_overwrite", "archive", "allow_overwrite", "PAI_ALLOW_OVERWRITE", _bool, "false"),
    Setting("patch_roots", "archive", "patch_roots", "PAI_PATCH_ROOTS", _paths, ""),
    Setting("max_body_size", "archive", "max_body_size", "PAI_MAX_BODY_SIZE", _size, "0"),
    Setting("receive_timeout", "archive", "receive_timeout", "PAI_RECEIVE_TIMEOUT", _seconds, "60"),
    # total time a client may take to send a request line and headers
    Setting("head_timeout", "archive", "head_timeout", "PAI_HEAD_TIMEOUT", _seconds, "30"),
    # an upload slower than this on average (after its first receive_timeout seconds) is 408
    Setting("min_body_rate", "archive", "min_body_rate", "PAI_MIN_BODY_RATE", _size, "1K"),
    # a response whose client takes nothing for this long is dropped
    Setting("send_timeout", "archive", "send_timeout", "PAI_SEND_TIMEOUT", _seconds, "60"),
    Setting("sweep_on_start", "archive", "sweep_on_start", "PAI_SWEEP_ON_START", _bool, "true"),
    # the sweep leaves temporary files younger than this alone, locked or not
    Setting("sweep_min_age", "archive", "sweep_min_age", "PAI_SWEEP_MIN_AGE", _seconds, "600"),
    # stages and recalls run at most this many at a time per worker; the rest wait their turn
    Setting("stage_workers", "archive", "stage_workers", "PAI_STAGE_WORKERS", _positive_int, "4"),
    # the digest computed while a PUT is received and stored beside the file (none: no checksums)
    Setting("checksum", "archive", "checksum", "PAI_CHECKSUM", parse_config_algorithm, "sha256"),
    # bearer tokens, one "ro <token>" / "rw <token>" a line (pyai/web/auth.py); "" leaves the archive open
    Setting("auth_tokens_file", "auth", "tokens_file", "PAI_AUTH_TOKENS_FILE", _optional_path, ""),
    Setting("use_id2filename", "posix", "use_id2filename", "PAI_USE_ID2FILENAME", _bool, "false"),
    Setting("hpss_user", "hpss", "user", "PAI_HPSS_USER", str, "hpss"),
    Setting("hpss_auth", "hpss", "auth", "PAI_HPSS_AUTH", str, "/var/hpss/etc/hpss.keytab"),
    Setting("hpss_sitename", "hpss", "sitename", "PAI_HPSS_SITENAME", str, "example.com"),
    Setting("hpss_accept_latency", "hpss", "accept_latency", "PAI_HPSS_ACCEPT_LATENCY", _seconds, "5"),
    # GET of a file on tape only waits this long for its stage, then answers 503 (0: at once).
    Setting("hpss_stage_timeout", "hpss", "stage_timeout", "PAI_HPSS_STAGE_TIMEOUT", _seconds, "60"),
    Setting("hpss_retry_after", "hpss", "retry_after", "PAI_HPSS_RETRY_AFTER", _seconds, "30"),
    # how long one core-server ping answers for the requests of a worker
    Setting("hpss_ping_interval", "hpss", "ping_interval", "PAI_HPSS_PING_INTERVAL", _seconds, "1"),
    Setting("sideband_prefix", "hsm_sideband", "sam_qfs_prefix", "PAI_SAM_QFS_PREFIX", str, "/tmp"),
    Setting("sideband_schema", "hsm_sideband", "schema", "PAI_SIDEBAND_SCHEMA", str, "samdb"),
    Setting("sideband_host", "hsm_sideband", "host", "PAI_SIDEBAND_HOST", str, "127.0.0.1"),
    Setting("sideband_port", "hsm_sideband", "port", "PAI_SIDEBAND_PORT", int, "3306"),
    Setting("sideband_user", "hsm_sideband", "user", "PAI_SIDEBAND_USER", str, "root"),
    Setting("sideband_password", "hsm_sideband", "password", "PAI_SIDEBAND_PASSWORD", str, ""),
    # a sideband database that does not accept a connection this fast is down (HEAD/POST answer 503)
    Setting("sideband_connect_timeout", "hsm_sideband", "connect_timeout", "PAI_SIDEBAND_CONNECT_TIMEOUT", _seconds, "2"),
    # longest wait for the answer to one query before HEAD/POST answer 503
    Setting("sideband_query_timeout", "hsm_sideband", "query_timeout", "PAI_SIDEBAND_QUERY_TIMEOUT", _seconds, "5"),
    Setting("sideband_retry_after", "hsm_sideband", "retry_after", "PAI_SIDEBAND_RETRY_AFTER", _seconds, "10"),
)


@dataclasses.dataclass(frozen=True)
class Config:
    """The validated settings of one archive service (see SETTINGS for the sources)."""

    backend: str
    prefix: str
    allow_overwrite: bool
    patch_roots: tuple
    max_body_size: int
    receive_timeout: float
    head_timeout: float
    min_body_rate: int
    send_timeout: float
    sweep_on_start: bool
    sweep_min_age: float
    stage_workers: int
    checksum: Optional[str]
    auth_tokens_file: str
    use_id2filename: bool
    hpss_user: str
    hpss_auth: str
    hpss_sitename: str
    hpss_accept_latency: float
    hpss_stage_timeout: float
    hpss_retry_after: float
    hpss_ping_interval: float
    sideband_prefix: str
    sideband_schema: str
    sideband_host: str
    sideband_port: int
    sideband_user: str
    sideband_password: str
    sideband_connect_timeout: float
    sideband_query_timeout: float
    sideband_retry_after: float
    config_file: str = ""


# The prefix the gunicorn master checked at start-up (pyai.web.server.prepare_archive).
# Its workers inherit this at the fork and do not check again: a prefix that has
# turned read-only or gone away since then fails requests (5xx), not the boot of
# a replacement worker, which would stop the whole service; nor is a missing
# prefix re-created empty.
checked_prefix = None


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


def load(overrides=None, config_file=None, environ=os.environ, prepare=True):
    """Build the Config from the file, the environment and ``overrides`` (flag values by name).

    With ``prepare`` the prefix is created if missing and checked for writing.
    """
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    path = config_path(config_file, environ)
    ini = _read_ini(path) if path else None
    values = {}
    for setting in SETTINGS:
        raw, origin = setting.default, "default"
        if ini is not None and ini.has_option(setting.section, setting.option):
            raw, origin = ini.get(setting.section, setting.option), f"[{setting.section}] {setting.option} in {path}"
        if setting.env in environ:
            raw, origin = environ[setting.env], setting.env
        if setting.name in overrides:
            raw, origin = str(overrides[setting.name]), f"the {setting.name} given on the command line"
        try:
            values[setting.name] = setting.parse(raw)
        except ValueError as exc:
            raise ConfigError(f"bad value {raw!r} for {origin}: {exc}") from None
    values["prefix"] = os.path.realpath(os.path.expanduser(values["prefix"]))
    config = Config(config_file=path, **values)
    if prepare and config.prefix != checked_prefix:
        prepare_prefix(config.prefix)
    return config


def prepare_prefix(prefix):
    """Create the prefix if needed and make sure this process can write in it."""
    try:
        os.makedirs(prefix, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the archive prefix {prefix}: {exc.strerror}") from None
    if not os.path.isdir(prefix):
        raise ConfigError(f"the archive prefix {prefix} is not a directory")
    if not os.access(prefix, os.W_OK | os.X_OK):
        raise ConfigError(f"the archive prefix {prefix} is not writable by this user")
