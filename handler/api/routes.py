"""The route table: every HTTP operation, from which dispatch, the OpenAPI document and template.yml's API come."""
from __future__ import annotations

from . import model_routes, version_routes
from .mlflow import routes as mlflow_routes
from .routing import Route, Router

ROUTES: tuple[Route, ...] = (*model_routes.ROUTES, *version_routes.ROUTES, *mlflow_routes.ROUTES)
ROUTER = Router(ROUTES)
CREATE_MODEL = next(route for route in ROUTES if route.operation == "CreateModel")  # what an event without Version runs
