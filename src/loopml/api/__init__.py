"""The HTTP API: one router per resource (``routes``), request and response bodies
(``schemas``) and the MLflow REST layer (``mlflow``); nothing else. ``loopml.platform``
builds the app that mounts them, with its guards and error mapping."""
