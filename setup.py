"""Build the native parts of pyai: the Cython I/O extension ``pyai._io``.

``PYAI_NO_EXTENSIONS=1`` builds a pure-Python package (``pyai._pyio`` then does
all the work).  ``PYAI_DEBUG=1`` keeps asserts and debug symbols.
"""

import os

from setuptools import Extension, setup

CFLAGS = ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-D_GNU_SOURCE"]
if os.environ.get("PYAI_DEBUG"):
    CFLAGS = ["-O0", "-g3", "-Wall", "-Wextra", "-D_GNU_SOURCE"]


def extensions():
    if os.environ.get("PYAI_NO_EXTENSIONS"):
        print("pyai: pure-Python build (PYAI_NO_EXTENSIONS is set)")
        return []
    from Cython.Build import cythonize

    io_ext = Extension(
        "pyai._io",
        sources=["pyai/_io.pyx", "csrc/pyai_io.c"],
        include_dirs=["csrc"],
        depends=["csrc/pyai_io.h"],
        extra_compile_args=CFLAGS,
    )
    return cythonize(
        [io_ext],
        language_level=3,
        compiler_directives={"boundscheck": False, "wraparound": False},
    )


setup(ext_modules=extensions())
