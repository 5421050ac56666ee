"""The portal's pages, one module per area; ``ROUTERS`` is what the app mounts."""

from loopml.portal.pages import (
    data,
    deploy_form,
    deployments,
    login,
    overview,
    pipelines,
    settings,
)

ROUTERS = [
    login.router,
    overview.router,
    deployments.router,
    deploy_form.router,
    data.router,
    pipelines.router,
    settings.router,
]
