"""Storage backends, chosen by name (``-t``/``PAI_BACKEND_TYPE``)."""

from pyai.backends.base import Backend
from pyai.config import Config
from pyai.errors import ConfigError


def create_backend(config: Config) -> Backend:
    """Return the backend object named by ``config.backend``."""
    if config.backend == "posix":
        from pyai.backends.posix import PosixBackend

        return PosixBackend(config)
    if config.backend == "hpss":
        from pyai.backends.hpss import HpssBackend

        return HpssBackend(config)
    if config.backend == "hsmsideband":
        from pyai.backends.sideband import SidebandBackend

        return SidebandBackend(config)
    raise ConfigError(
        f"the {config.backend} backend is not available in this version of pyai (use posix, hpss or hsmsideband)"
    )
