"""One model-server process, as the local deployment target supervises it::

    python -m loopml.serve --package DIR --manifest-sha256 HASH --name churn --version 3 \\
        --deployment churn-prod --port 9001 [--host 127.0.0.1] [--max-batch-size 32 ...] \\
        [--log-url http://127.0.0.1:8765 --log-project default --log-role primary]

The package is verified against the manifest hash before anything is deserialized, then
served by uvicorn. It binds the loopback address unless ``--allow-remote`` is given (the
server has no authentication of its own: a gateway or a pod network must front it). Nothing
is printed per request. SIGTERM (or SIGINT) stops accepting connections, lets requests in
flight finish (up to ``--graceful-shutdown-s``) and exits 0. Exit status 2: bad arguments
or a package that fails verification.

With ``--log-url``, every prediction is posted, in batches and off the hot path, to the
platform's prediction table of the deployment (``loopml.predictions.http_sink``); on SIGTERM the
rows still waiting are posted (up to ``--log-close-timeout-s``) before the process exits.
"""

from __future__ import annotations

import argparse
import ipaddress
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopml.core.errors import LoopmlError
from loopml.serve.server.config import ModelServerSettings, PredictionLogSettings
from loopml.system import heap

if TYPE_CHECKING:
    from loopml.predictions.http_sink import HttpPredictionSink

_LOOPBACK_NAMES = frozenset({"localhost"})


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_parser() -> argparse.ArgumentParser:
    """The worker's arguments; one ``--flag`` per ``ModelServerSettings`` field too."""
    parser = argparse.ArgumentParser(
        prog="python -m loopml.serve", description="Serve one model version over HTTP."
    )
    parser.add_argument("--package", required=True, type=Path, help="The package folder.")
    parser.add_argument(
        "--manifest-sha256", required=True, help="The manifest's SHA-256, as registered."
    )
    parser.add_argument("--name", required=True, help="The registered model's name.")
    parser.add_argument("--version", required=True, type=int, help="The model version.")
    parser.add_argument("--deployment", required=True, help="The deployment's name.")
    parser.add_argument("--port", required=True, type=int, help="TCP port to bind.")
    parser.add_argument("--host", default="127.0.0.1", help="Address to bind (loopback).")
    parser.add_argument(
        "--allow-remote",
        action="store_true",
        help="Allow a non-loopback --host (the server has no authentication of its own).",
    )
    parser.add_argument(
        "--prefer",
        choices=("primary", "onnx", "skops"),
        default="primary",
        help="The format to serve: the package's primary one, or a forced one.",
    )
    for name, field in ModelServerSettings.model_fields.items():
        kind: Any = field.annotation
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            type=kind,
            default=None,
            help=f"{field.description} (default {field.default})",
        )
    _log_flags(parser)
    return parser


def _log_flags(parser: argparse.ArgumentParser) -> None:
    """``--log-*``: one flag per ``PredictionLogSettings`` field."""
    fields = PredictionLogSettings.model_fields
    parser.add_argument("--log-url", default=None, help=fields["url"].description)
    parser.add_argument("--log-project", default=None, help=fields["project"].description)
    parser.add_argument(
        "--log-role", choices=("primary", "canary", "shadow"), help=fields["role"].description
    )
    for name in ("max_batch", "flush_ms", "max_queue", "close_timeout_s"):
        field = fields[name]
        kind: Any = field.annotation
        parser.add_argument(
            f"--log-{name.replace('_', '-')}",
            type=kind,
            default=None,
            help=f"{field.description} (default {field.default})",
        )


def _log_settings(args: argparse.Namespace) -> PredictionLogSettings:
    given = {
        name: getattr(args, f"log_{name}")
        for name in PredictionLogSettings.model_fields
        if getattr(args, f"log_{name}") is not None
    }
    return PredictionLogSettings(**given)


def _settings(args: argparse.Namespace) -> ModelServerSettings:
    given = {
        name: getattr(args, name)
        for name in ModelServerSettings.model_fields
        if getattr(args, name) is not None
    }
    return ModelServerSettings(**given)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server until SIGTERM; the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not (_is_loopback(args.host) or args.allow_remote):
        parser.error(
            f"--host {args.host} is not a loopback address; the model server has no "
            "authentication, so binding it elsewhere needs --allow-remote"
        )
    try:
        settings = _settings(args)
        log_settings = _log_settings(args)
    except ValueError as exc:
        parser.error(str(exc))

    import uvicorn

    from loopml.packaging.runtime import load_runtime
    from loopml.serve.server.app import create_model_app

    try:
        runtime = load_runtime(
            args.package, manifest_sha256=args.manifest_sha256, prefer=args.prefer
        )
    except LoopmlError as exc:
        print(f"loopml.serve: cannot load {args.package}: {exc.message}", file=sys.stderr)
        return 2
    try:
        sink = _sink(log_settings, args.deployment)
    except LoopmlError as exc:
        print(f"loopml.serve: {exc.message}", file=sys.stderr)
        return 2
    app = create_model_app(
        runtime,
        deployment=args.deployment,
        model_name=args.name,
        version=args.version,
        sink=sink,
        settings=settings,
    )
    if sink is not None:
        sink.register_metrics(app.state.server.metrics.registry)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        access_log=False,
        log_level="warning",
        lifespan="on",
        server_header=False,
        timeout_graceful_shutdown=int(settings.graceful_shutdown_s),
    )
    print(
        f"loopml.serve: {args.name} version {args.version} ({runtime.format}) for deployment "
        f"{args.deployment} on http://{args.host}:{args.port}",
        file=sys.stderr,
        flush=True,
    )
    # uvicorn re-raises the signal it caught once its graceful shutdown is done, so that
    # the default action (death by SIGTERM) follows; a no-op handler makes that exit 0.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _after_shutdown)
    heap.settle()  # see loopml.system.heap
    try:
        uvicorn.Server(config).run()
    finally:
        # After the graceful shutdown every answered request has been recorded: post them.
        if sink is not None:
            sink.close(log_settings.close_timeout_s)
    return 0


def _sink(settings: PredictionLogSettings, deployment: str) -> HttpPredictionSink | None:
    if settings.url is None:
        return None
    from loopml.predictions.http_sink import HttpPredictionSink

    return HttpPredictionSink(
        settings.url,
        settings.project,
        deployment,
        role=settings.role,
        max_batch=settings.max_batch,
        flush_ms=settings.flush_ms,
        max_queue=settings.max_queue,
    )


def _after_shutdown(signum: int, frame: object) -> None:
    """Nothing: the server has already shut down gracefully when this runs."""
