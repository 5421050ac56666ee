"""The portal's pages, one module per area; ``ROUTERS`` is what the app mounts."""

from loopml.portal.pages import login, overview
from loopml.portal.pages import models as models_pages
from loopml.portal.pages import runs as runs_pages

ROUTERS = [login.router, overview.router]
ROUTERS += [models_pages.router, runs_pages.router]
