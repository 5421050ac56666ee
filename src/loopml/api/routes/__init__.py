"""One router per resource. Routes are thin: validate, call a service, shape the answer."""
