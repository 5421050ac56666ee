"""The gateway: every deployment's front door. Routing tables pushed by the control plane
(``routing``), canary draws, shadow copies and the scale-from-zero activator (``app``), the
pooled upstream client to replicas (``_upstream``) and the gateway's own metrics (``metrics``).
"""

from loopml.serve.gateway._tunnel import LOOPBACK as LOOPBACK

__all__ = ["LOOPBACK"]
