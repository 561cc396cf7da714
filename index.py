"""Function Compute loads `index.handler` / `index.initializer` / `index.wsgi_handler` from the code root."""
from handler.index import handler, initializer, wsgi_handler

__all__ = ["handler", "initializer", "wsgi_handler"]
