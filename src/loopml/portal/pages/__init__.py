"""The portal's pages, one module per area; ``ROUTERS`` is what the app mounts."""

from loopml.portal.pages import (
    data,
    deploy_form,
    deployments,
    login,
    models,
    overview,
    pipelines,
    runs,
    settings,
)

ROUTERS = [
    login.router,
    overview.router,
    deployments.router,
    deploy_form.router,
    models.router,
    runs.router,
    data.router,
    pipelines.router,
    settings.router,
]
