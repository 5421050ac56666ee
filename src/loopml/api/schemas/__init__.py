"""Request and response bodies of the HTTP API, one module per resource (``common`` holds the
shapes every resource shares)."""
