"""The one place loopml touches the (untyped) kubernetes client, imported only when used.

``ClusterApi`` is what the target needs of a cluster: get, server-side apply, list by
label, delete. ``connect`` builds the real one from a kubeconfig (or the pod's service
account); its errors become loopml errors that say how to fix them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from loopml.core.errors import (
    ConfigurationError,
    ConflictError,
    LoopmlError,
    PermissionDeniedError,
    ServiceUnavailableError,
    ValidationError,
)

Manifest = dict[str, Any]

_HOW = (
    "set LOOPML_KUBERNETES_KUBECONFIG to a kubeconfig file (and LOOPML_KUBERNETES_CONTEXT "
    "to pick a context), or LOOPML_KUBERNETES_IN_CLUSTER=true when the platform runs in a "
    "pod with a service account; `loopml deploy ... --dry-run -o yaml` renders the "
    "manifests without a cluster"
)


class ClusterApi(Protocol):
    """What the Kubernetes target asks of a cluster."""

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> Manifest | None:
        """The object, or ``None`` when there is none."""

    def apply(self, manifest: Manifest, *, field_manager: str) -> None:
        """Create or update the object by server-side apply."""

    def list(self, api_version: str, kind: str, namespace: str, selector: str) -> list[Manifest]:
        """The objects of ``kind`` matching the label ``selector``; none when the cluster
        does not know the kind (KServe not installed)."""

    def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        """Delete the object (its pods with it); no error when it is already gone."""


def _import(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigurationError(
            "the Kubernetes target needs the kubernetes client, which is not installed: "
            "pip install 'loopml[kubernetes]'",
            details={"module": module},
        ) from exc


def connect(kubeconfig: Path | None, context: str | None, in_cluster: bool) -> ClusterApi:
    """A client for the cluster the kubeconfig (or the pod's service account) names.

    Raises:
        ConfigurationError: no kubeconfig, an invalid one, an unknown context, or not in a
            pod with ``in_cluster``; or the kubernetes client is not installed.
    """
    config = _import("kubernetes.config")
    client = _import("kubernetes.client")
    dynamic = _import("kubernetes.dynamic")
    if in_cluster:
        configuration = client.Configuration()
        try:
            config.load_incluster_config(client_configuration=configuration)
        except config.ConfigException as exc:
            raise ConfigurationError(
                f"cannot use the pod's service account for Kubernetes ({exc}): in_cluster "
                f"works only inside a pod; otherwise {_HOW}"
            ) from exc
        api_client = client.ApiClient(configuration)
    else:
        if kubeconfig is not None and not Path(kubeconfig).is_file():
            raise ConfigurationError(
                f"the kubeconfig {str(kubeconfig)!r} is not a file: {_HOW}",
                details={"kubeconfig": str(kubeconfig)},
            )
        try:
            # persist_config=False: the platform never writes back to a user's kubeconfig.
            api_client = config.new_client_from_config(
                config_file=str(kubeconfig) if kubeconfig is not None else None,
                context=context,
                persist_config=False,
            )
        except (config.ConfigException, ValueError, TypeError, KeyError) as exc:
            where = str(kubeconfig) if kubeconfig else "$KUBECONFIG or ~/.kube/config"
            raise ConfigurationError(
                f"no usable Kubernetes configuration at {where} ({exc}): {_HOW}",
                details={"kubeconfig": where},
            ) from exc
    return _DynamicApi(dynamic.DynamicClient, api_client, _import("kubernetes.dynamic.exceptions"))


class _DynamicApi:
    """``ClusterApi`` over the kubernetes client's DynamicClient (discovery made lazily)."""

    def __init__(self, factory: Callable[[Any], Any], api_client: Any, errors: Any) -> None:
        self._factory = factory
        self._api_client = api_client
        self._errors = errors
        self._client: Any = None

    def _dynamic(self) -> Any:
        if self._client is None:
            with self._translated("discover the API of"):
                self._client = self._factory(self._api_client)
        return self._client

    def _resource(self, api_version: str, kind: str) -> Any:
        with self._translated(f"look up {kind} in"):
            try:
                return self._dynamic().resources.get(api_version=api_version, kind=kind)
            except self._errors.ResourceNotFoundError:
                return None

    def _require(self, api_version: str, kind: str) -> Any:
        resource = self._resource(api_version, kind)
        if resource is None:
            hint = ""
            if "kserve" in api_version:
                hint = " (is KServe installed?)"
            elif api_version.startswith("gateway.networking.k8s.io/"):
                hint = (
                    " (are the Gateway API CRDs installed? Without them, unset "
                    "kubernetes.gateway_parent)"
                )
            raise ConfigurationError(
                f"the cluster does not serve {kind} {api_version}{hint}",
                details={"api_version": api_version, "kind": kind},
            )
        return resource

    @contextmanager
    def _translated(self, action: str) -> Iterator[None]:
        try:
            yield
        except LoopmlError:
            raise
        except self._errors.ApiException as exc:
            raise _api_error(action, exc) from exc
        except Exception as exc:  # urllib3's connection errors, TLS errors
            raise ServiceUnavailableError(
                f"cannot {action} the Kubernetes API: {type(exc).__name__}: {exc}"[:500]
            ) from exc

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> Manifest | None:
        resource = self._require(api_version, kind)
        with self._translated(f"read {kind} {namespace}/{name} from"):
            try:
                found = self._dynamic().get(resource, name=name, namespace=namespace)
            except self._errors.NotFoundError:
                return None
        return dict(found.to_dict())

    def apply(self, manifest: Manifest, *, field_manager: str) -> None:
        kind, meta = manifest["kind"], manifest["metadata"]
        resource = self._require(manifest["apiVersion"], kind)
        with self._translated(f"apply {kind} {meta['namespace']}/{meta['name']} through"):
            self._dynamic().server_side_apply(
                resource,
                body=manifest,
                namespace=meta["namespace"],
                field_manager=field_manager,
                force_conflicts=True,
            )

    def list(self, api_version: str, kind: str, namespace: str, selector: str) -> list[Manifest]:
        resource = self._resource(api_version, kind)
        if resource is None:
            return []
        with self._translated(f"list {kind} in {namespace} through"):
            found = self._dynamic().get(resource, namespace=namespace, label_selector=selector)
        return [dict(item) for item in found.to_dict().get("items", [])]

    def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        resource = self._require(api_version, kind)
        with self._translated(f"delete {kind} {namespace}/{name} through"):
            try:
                self._dynamic().delete(
                    resource, name=name, namespace=namespace, propagation_policy="Background"
                )
            except self._errors.NotFoundError:
                return


def _api_error(action: str, exc: Any) -> LoopmlError:
    status = getattr(exc, "status", None)
    reason = str(getattr(exc, "reason", "") or exc)[:300]
    message = f"Kubernetes refused to {action} the cluster: {status} {reason}"
    if status in (401, 403):
        return PermissionDeniedError(
            f"{message}; grant the platform's account the Role in docs/kubernetes.md"
        )
    if status == 409:
        return ConflictError(message)
    if status in (400, 422):
        return ValidationError(message)
    return ServiceUnavailableError(message)
