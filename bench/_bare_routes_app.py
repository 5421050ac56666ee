"""The reference of `bench/startup.py`: a bare FastAPI app with loopml's routes (the API's, the
MLflow layer's and the portal's, so the same route modules are imported and the same routes
built) and nothing else: no database, no lifespan, no gateway processes, no middleware, its
health a constant. What `uvicorn bench._bare_routes_app:app` takes to answer is the floor of
what `loopml up` can take with these routes."""

from __future__ import annotations

from fastapi import FastAPI

from loopml.api import mlflow
from loopml.api.routes import health as health_routes
from loopml.api.routes.all import MODULES
from loopml.portal import install

app = FastAPI(title="bare", openapi_url=None, docs_url=None, redoc_url=None)


@app.get("/api/v1/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


for module in MODULES:
    if module is not health_routes:  # the bare app's health is a constant
        app.include_router(module.router)
mlflow.install(app)
install(app)
