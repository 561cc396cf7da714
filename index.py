"""Function Compute loads `index.handler`, `index.initializer` and `index.wsgi_handler` from the code root."""
import os
import sys

# `make vendor` installs the pinned dependencies for FC's interpreter (CPython 3.10, x86_64 Linux) in
# vendor/cpython-310-linux-x86_64/. They come first only on that interpreter: anywhere else (tests or the bench
# on another Python or machine) their binaries would not load, so that interpreter's own packages are used.
_INTERPRETER = f"{sys.implementation.cache_tag}-{sys.platform}-{os.uname().machine}"
_VENDOR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vendor", _INTERPRETER)
if os.path.isdir(_VENDOR) and _VENDOR not in sys.path:
    sys.path.insert(0, _VENDOR)

from handler.entry.fc import handler, initializer, wsgi_handler  # noqa: E402

__all__ = ["handler", "initializer", "wsgi_handler"]
