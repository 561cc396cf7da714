"""Function Compute loads `index.handler`, `index.initializer` and `index.wsgi_handler` from the code root."""
import os
import sys

# `make vendor` installs the pinned dependencies here; they take precedence over FC's preinstalled ones.
_VENDOR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vendor")
if os.path.isdir(_VENDOR) and _VENDOR not in sys.path:
    sys.path.insert(0, _VENDOR)

from handler.entry.fc import handler, initializer, wsgi_handler  # noqa: E402

__all__ = ["handler", "initializer", "wsgi_handler"]
