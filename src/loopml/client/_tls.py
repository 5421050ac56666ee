"""The SDK's TLS settings, with the trust store read on the first TLS connection.

httpx builds its SSL context, certificate bundle included, when a client is made. Reading
the bundle took about 25 ms of every CLI command, though most talk plain HTTP to a local
server and never shake hands. This context has the settings httpx would have made (host
names checked, certificates required, certifi's bundle unless ``SSL_CERT_FILE`` or
``SSL_CERT_DIR`` names another) and reads the bundle when it first wraps a connection.
"""

from __future__ import annotations

import os
import ssl
import sys
import threading
from typing import Any


class _TrustOnFirstUse(ssl.SSLContext):
    _loaded = False
    _lock = threading.Lock()

    def _trust(self) -> None:
        with self._lock:
            if not self._loaded:
                self.load_verify_locations(*_trust_locations())
                self._loaded = True

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        self._trust()
        return super().wrap_socket(*args, **kwargs)

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        self._trust()
        return super().wrap_bio(*args, **kwargs)


def _trust_locations() -> tuple[str | None, str | None]:
    """``(cafile, capath)`` as httpx picks them for ``verify=True``."""
    if cafile := os.environ.get("SSL_CERT_FILE"):
        return cafile, None
    if capath := os.environ.get("SSL_CERT_DIR"):
        return None, capath
    import certifi

    return certifi.where(), None


def tls_context() -> ssl.SSLContext:
    """A client context that verifies servers, reading its trust store on first use; the
    rest as ``ssl.create_default_context`` makes it."""
    context = _TrustOnFirstUse(ssl.PROTOCOL_TLS_CLIENT)  # host names and certificates checked
    if sys.version_info >= (3, 13):
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN | ssl.VERIFY_X509_STRICT
    if (keylog := os.environ.get("SSLKEYLOGFILE")) and not sys.flags.ignore_environment:
        context.keylog_filename = keylog
    return context
