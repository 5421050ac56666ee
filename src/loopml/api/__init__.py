"""The HTTP API: one router per resource (``routes``), request and response bodies
(``schemas``), HTTP-side glue (``services``), the request guards and error mapping, and the
MLflow REST layer (``mlflow``). ``loopml.platform`` builds the app that mounts them."""
