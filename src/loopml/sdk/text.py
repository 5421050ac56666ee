"""``loopml.train_text_model``: a text task (``text-classification``, ``text-regression``) on
a dataset snapshot, from the SDK or ``loopml train``: fine-tuning a transformers encoder with
resumable checkpoints, or sentence embeddings + AutoML (see docs/text.md).

Recorded like ``loopml.train_model``: on a server over HTTP (``url=``, a ``client``, or
``LOOPML_CLIENT_URL``) or, with none, in the embedded store.

Example:
    >>> import loopml
    >>> outcome = loopml.train_text_model("reviews_snap", target="sentiment",
    ...     task="text-classification", method="finetune", base="./distilbert",
    ...     spot=True, register_as="sentiment")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from loopml.sdk.backends import HttpAccess, HttpBackend

if TYPE_CHECKING:
    from loopml.client import Client
    from loopml.settings import Settings
    from loopml.train.service import TrainingAccess, TrainOutcome

__all__ = ["train_text_model"]


def training_access(
    project: str, url: str | None, client: Client | None, settings: Settings | None
) -> TrainingAccess:
    """Where training reads and records: the server over HTTP, else the embedded stores."""
    from loopml.sdk.tracking import _backend

    backend = _backend(project, url, client, settings)
    if isinstance(backend, HttpBackend):
        return HttpAccess(backend)
    from loopml.registry.embedded_training import EmbeddedAccess, EmbeddedBackend

    assert isinstance(backend, EmbeddedBackend)
    return EmbeddedAccess(backend)


def train_text_model(
    dataset: str,
    *,
    target: str,
    task: str,
    project: str = "default",
    url: str | None = None,
    client: Client | None = None,
    settings: Settings | None = None,
    **options: Any,
) -> TrainOutcome:
    """Train a text model on a dataset version's frozen split; track, package, register and
    evaluate it.

    Args:
        dataset: ``name``, ``name@latest`` or ``name@3``; the version must have a split.
        target: the column to predict.
        task: ``text-classification`` or ``text-regression``.
        project, url, client, settings: where to record (see ``loopml.start_run``).
        **options: the options by their flat names (``TEXT_KEYWORDS`` in
            ``loopml.train.options``, grouped there into ``TextTrainOptions``):
            ``text_column``, ``method`` (``auto``, ``finetune``, ``embeddings``), ``base``,
            ``epochs``, ``batch_size``, ``learning_rate``, ``max_length``, ``seed``,
            ``checkpoint_every_steps``, ``checkpoint_every_s``, ``spot``, ``device``,
            ``budget_s``, ``max_iter``, ``estimators``, ``metric``, ``n_jobs``,
            ``max_model_mb``, ``tiny``, ``checkpoint_key``, ``register_as``,
            ``description``, ``experiment``; and ``on_trial``, called with each trial of
            the embeddings method's search.

    Raises:
        ValidationError: an unknown option, bad arguments, a failed parity check.
        TrainingInterrupted: spot mode got SIGTERM (a checkpoint was saved first).
    """
    from loopml.train.options import TextTrainOptions, TrainingData
    from loopml.train.text.service import train_text

    access = training_access(project, url, client, settings)
    on_trial = options.pop("on_trial", None)
    built = TextTrainOptions.from_keywords(TrainingData(dataset, target, task), options)
    return train_text(access, built, on_trial=on_trial)
