"""The optional native fan-out helper (``roomcast.runtime._sendmmsg``); everything else is in pyproject.toml.

``optional=True``: without a C compiler (or on a platform without ``sendmmsg``) the build of this one
extension fails with a warning and the package installs without it; the server then sends one
``sendto`` per datagram (``roomcast.runtime.sendmmsg`` says which path runs).
"""

import sys

from setuptools import Extension, setup

extensions = []
if sys.platform.startswith("linux"):  # sendmmsg(2) is Linux (and recent BSDs); elsewhere the fallback
    extensions.append(
        Extension(
            "roomcast.runtime._sendmmsg",
            ["src/roomcast/runtime/_sendmmsg.c"],
            optional=True,
            extra_compile_args=["-O2", "-Wall"],
        )
    )

setup(ext_modules=extensions)
