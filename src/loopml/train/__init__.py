"""Training: tracking (``tracking``: runs, params, metrics, artifacts), AutoML
(``automl``), custom code and text models (``custom``, ``text``), checkpoints, evaluation,
and the training service (``service``: train, package, register, evaluate). Above
``backup`` and ``data``, below ``registry``; packaging a model is ``loopml.packaging``'s."""
