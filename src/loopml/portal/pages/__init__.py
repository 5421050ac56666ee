"""The portal's pages, one module per area; ``ROUTERS`` is what the app mounts."""

from loopml.portal.pages import deploy_form, deployments, login, overview

ROUTERS = [login.router, overview.router, deployments.router, deploy_form.router]
