"""The portal's pages, one module per area; ``ROUTERS`` is what the app mounts."""

from loopml.portal.pages import data, login, overview, pipelines, settings

ROUTERS = [login.router, overview.router]
ROUTERS.append(data.router)
ROUTERS.append(pipelines.router)
ROUTERS.append(settings.router)
