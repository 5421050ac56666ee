"""What both HTTP faces (``api`` and ``portal``) read at request time: the app's backends
and the accessor that finds them (``context``), who is asking, the permission check and the
browser-session helpers (``authz``), request bodies streamed into blocking readers and
writers (``streaming``), the route class every router declares its routes with
(``routes``). Below ``api`` and ``portal``, above the capabilities."""
