"""The API's services: what the routes (and later the portal) call. Routes hold no SQL."""
