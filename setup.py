"""Build the native parts of pyai: the Cython I/O extension ``pyai.native._cimpl`` and the
cffi binding to HPSS ``pyai.hpss_client._hpss`` (against ``$HPSS_ROOT`` when it has the
headers, else against the emulator ``libhpss_emu.so`` built here into the package).

``PYAI_NO_EXTENSIONS=1`` builds a pure-Python package (``pyai.native._pyimpl`` then does
all the work).  ``PYAI_DEBUG=1`` keeps asserts and debug symbols.  ``PYAI_SANITIZE=1`` builds
every C part with AddressSanitizer and UBSan (``make test-sanitized``).
"""

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

CFLAGS = ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-D_GNU_SOURCE"]
if os.environ.get("PYAI_DEBUG"):
    CFLAGS = ["-O0", "-g3", "-Wall", "-Wextra", "-D_GNU_SOURCE"]
# Compiled and linked in: any overflow, use after free or undefined behaviour aborts the process.
SANITIZE = (
    ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer", "-g"]
    if os.environ.get("PYAI_SANITIZE")
    else []
)
CFLAGS += SANITIZE


def extensions():
    if os.environ.get("PYAI_NO_EXTENSIONS"):
        print("pyai: pure-Python build (PYAI_NO_EXTENSIONS is set)")
        return []
    from Cython.Build import cythonize

    io_ext = Extension(
        "pyai.native._cimpl",
        sources=[
            "pyai/native/_cimpl.pyx",
            "csrc/pyai_io.c",
            "csrc/pyai_chunked.c",
            "csrc/pyai_wait.c",
            "csrc/pyai_plain.c",
        ],
        include_dirs=["csrc"],
        depends=["csrc/pyai_io.h", "csrc/pyai_chunked.h", "csrc/pyai_plain.h"],
        extra_compile_args=CFLAGS,
        extra_link_args=SANITIZE,
    )
    # Adler-32 with AVX2 (pyai.archive.checksums falls back to zlib's without it)
    adler_ext = Extension(
        "pyai.archive._adler32", sources=["csrc/pyai_adler32.c"], extra_compile_args=CFLAGS, extra_link_args=SANITIZE
    )
    return cythonize(
        [io_ext],
        language_level=3,
        compiler_directives={"boundscheck": False, "wraparound": False},
    ) + [adler_ext, hpss_extension()]


def hpss_extension():
    """pyai.hpss_client._hpss from the C that the cffi builder (csrc/hpss_build.py) emits."""
    sys.path.insert(0, "csrc")
    import hpss_build

    source = os.path.join("build", "cffi", "_hpss.c")
    os.makedirs(os.path.dirname(source), exist_ok=True)
    hpss_build.ffibuilder.emit_c_code(source)
    options = hpss_build.build_options()
    options["extra_compile_args"] = CFLAGS + options.get("extra_compile_args", [])
    options["extra_link_args"] = SANITIZE + options.get("extra_link_args", [])
    return Extension(
        "pyai.hpss_client._hpss",
        sources=[source],
        depends=[os.path.join("csrc", "hpss_build.py")] + [f for f in hpss_build.EMULATOR_SOURCES],
        **options,
    )


class BuildExt(build_ext):
    """build_ext that first builds the HPSS emulator library when the binding links it."""

    def run(self):
        super().run()
        if self.inplace and self._emulator:
            # setuptools builds in build/ and copies the extensions back; the library goes along
            target = os.path.join(
                self.get_finalized_command("build_py").get_package_dir("pyai.hpss_client"), "libhpss_emu.so"
            )
            self.copy_file(self._emulator, target)

    _emulator = None

    def build_extensions(self):
        for ext in self.extensions:
            if ext.name == "pyai.hpss_client._hpss" and "hpss_emu" in ext.libraries:
                ext.library_dirs = list(ext.library_dirs) + [self._build_emulator(ext)]
        super().build_extensions()

    def _build_emulator(self, ext):
        sys.path.insert(0, "csrc")
        import hpss_build

        target_dir = os.path.dirname(self.get_ext_fullpath(ext.name))
        os.makedirs(target_dir, exist_ok=True)
        objects = self.compiler.compile(
            hpss_build.EMULATOR_SOURCES,
            output_dir=self.build_temp,
            include_dirs=[hpss_build.EMULATOR_DIR],
            extra_postargs=CFLAGS + ["-fPIC", "-pthread"],
            depends=[
                os.path.join(hpss_build.EMULATOR_DIR, "emu.h"),
                os.path.join(hpss_build.EMULATOR_DIR, "hpss_api.h"),
            ],
        )
        self.compiler.link_shared_object(
            objects,
            os.path.join(target_dir, "libhpss_emu.so"),
            extra_postargs=SANITIZE + ["-pthread", "-Wl,-soname,libhpss_emu.so"],
        )
        self._emulator = os.path.join(target_dir, "libhpss_emu.so")
        return target_dir


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt})
