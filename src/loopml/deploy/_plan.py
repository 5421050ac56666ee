"""Deployment planning: a spec's references resolved to READY versions, and the revisions,
roles and traffic they ask for, reusing the revisions in use that already serve the same
versions (see ``loopml.deploy.control``, which records and applies a plan)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pydantic

from loopml import registry
from loopml.core.clock import utcnow
from loopml.core.deployments import Deployment, DeploymentSpec, DeploymentStatus, Revision
from loopml.core.errors import ConflictError, ValidationError
from loopml.core.refs import ModelRef
from loopml.core.registry import ModelVersion, VersionStatus
from loopml.core.serving_inputs import input_mismatch
from loopml.data.features.serving import check_serving
from loopml.store import MetadataStore, logged_models
from loopml.store.deployments import NewRevision, Role, Roles


@dataclass
class Plan:
    """What a spec resolves to: the roles, the traffic and the revisions to add."""

    roles: Roles
    traffic: dict[int, int]
    new: list[NewRevision] = field(default_factory=list)


def spec_error(exc: pydantic.ValidationError) -> ValidationError:
    """A pydantic error on a deployment spec as loopml's ``ValidationError``."""
    errors = [
        {"loc": [str(p) for p in err["loc"]], "msg": err["msg"], "type": err["type"]}
        for err in exc.errors(include_url=False, include_input=False)[:20]
    ]
    summary = "; ".join(f"{'.'.join(e['loc']) or 'spec'}: {e['msg']}" for e in errors[:3])
    return ValidationError(f"invalid deployment spec: {summary}", details={"errors": errors})


def follows(spec: DeploymentSpec, model: str, alias: str | None) -> bool:
    """Whether ``spec`` names ``model`` by ``alias`` (or, with ``alias`` None, by its newest
    READY version), so that it must be re-resolved when that moves."""
    refs = [spec.model, spec.shadow, spec.canary.model if spec.canary else None]
    for ref in refs:
        if ref is None:
            continue
        parsed = ModelRef.parse(ref)
        if parsed.name != model:
            continue
        if (alias is not None and parsed.alias == alias) or (alias is None and parsed.is_latest):
            return True
    return False


def in_use_revisions(traffic: Mapping[int, int], shadow: int | None) -> set[int]:
    return set(traffic) if shadow is None else {*traffic, shadow}


@dataclass(frozen=True)
class Resolved:
    """A checked spec and the versions its references name now, by role."""

    spec: DeploymentSpec
    versions: dict[str, ModelVersion]


def resolve_spec(
    store: MetadataStore,
    project: str,
    spec: Mapping[str, Any] | DeploymentSpec,
    *,
    check_features: bool = True,
) -> Resolved:
    """Resolve the references first (so that an unknown model is 404 whatever else is
    wrong), then check the whole spec, and its feature views against the feature store
    (unless ``check_features`` is off: following an alias keeps what was accepted)."""
    fields = spec.model_dump(mode="json") if isinstance(spec, DeploymentSpec) else dict(spec)
    canary = fields.get("canary")
    refs = {
        "primary": fields.get("model"),
        "canary": canary.get("model") if isinstance(canary, Mapping) else None,
        "shadow": fields.get("shadow"),
    }
    versions = {
        role: resolve_ref(store, project, ref) for role, ref in refs.items() if isinstance(ref, str)
    }
    try:
        checked = DeploymentSpec.model_validate(fields)
    except pydantic.ValidationError as exc:
        raise spec_error(exc) from None
    if check_features and checked.features is not None:
        check_serving(store, project, checked.features)
    check_inputs(store, project, versions)
    return Resolved(checked, versions)


def check_inputs(store: MetadataStore, project: str, versions: Mapping[str, ModelVersion]) -> None:
    """Refuse a canary or shadow that cannot take the primary's requests (the rule is
    ``core.serving_inputs``): each of its requests would fail with 422."""
    primary = versions.get("primary")
    others = {role: v for role, v in versions.items() if role != "primary"}
    if primary is None or not others:
        return
    with store.session() as session:
        signatures = {
            role: logged_models.get(session, project, v.logged_model_id).signature
            for role, v in versions.items()
        }
    for role, version in others.items():
        reasons = input_mismatch(signatures["primary"], signatures[role])
        if reasons:
            share = "its share of the requests" if role == "canary" else "every copy it gets"
            raise ConflictError(
                f"the {role} {version.model}/{version.version} cannot take the requests of the "
                f"primary {primary.model}/{primary.version}: {'; '.join(reasons)}. "
                f"{share.capitalize()} would fail with 422; deploy a {role} with the same "
                "inputs (same names, types and order), or serve it as its own deployment",
                details={
                    "role": role,
                    "primary": f"{primary.model}/{primary.version}",
                    role: f"{version.model}/{version.version}",
                    "reasons": reasons,
                },
            )


def resolve_ref(store: MetadataStore, project: str, ref: str) -> ModelVersion:
    """The READY version ``ref`` names in ``project``."""
    parsed = ModelRef.parse(ref)
    if parsed.project is not None:
        raise ValidationError(
            f"invalid model reference {ref!r}: a deployment serves models of its own "
            "project; drop the 'project:' prefix",
            details={"field": "model"},
        )
    version = registry.resolve(store, project, parsed)
    if version.status != VersionStatus.READY:
        raise ConflictError(
            f"{ref!r} is version {version.version}, which is {version.status}: only READY "
            "versions are deployed",
            details={"ref": ref, "version": version.version, "status": version.status},
        )
    return version


def make_plan(
    resolved: Resolved,
    current: Deployment | None,
    roles: Roles | None,
    first_number: int,
) -> Plan:
    """The roles and traffic ``resolved`` asks for, reusing the revisions in use that
    already serve the same versions."""
    spec = resolved.spec
    in_use: dict[int, Revision] = {}
    if current is not None:
        wanted = in_use_revisions(current.traffic, current.shadow_revision)
        in_use = {r.number: r for r in current.revisions if r.number in wanted}
    numbers = itertools.count(first_number)
    plan = Plan(Roles(0), {})
    refs = {
        "primary": spec.model,
        "canary": spec.canary.model if spec.canary else None,
        "shadow": spec.shadow,
    }
    now_playing = {
        "primary": roles.primary if roles else None,
        "canary": roles.canary if roles else None,
        "shadow": roles.shadow if roles else None,
    }
    chosen: dict[str, int | None] = {}
    for role, ref in refs.items():
        if ref is None:
            chosen[role] = None
            continue
        version = resolved.versions[role]
        chosen[role] = _number_for(role, ref, version, now_playing[role], in_use, plan, numbers)
    primary = chosen["primary"]
    assert primary is not None
    plan.roles = Roles(primary, chosen["canary"], chosen["shadow"])
    percent = spec.canary.percent if spec.canary else 0
    plan.traffic = {primary: 100 - percent}
    if plan.roles.canary is not None:
        plan.traffic[plan.roles.canary] = plan.traffic.get(plan.roles.canary, 0) + percent
    return plan


def _number_for(
    role: str,
    ref: str,
    version: ModelVersion,
    playing: int | None,
    in_use: dict[int, Revision],
    plan: Plan,
    numbers: Iterator[int],
) -> int:
    same = (version.model, version.version)
    if playing in in_use and (in_use[playing].model, in_use[playing].version) == same:
        return playing
    for number, revision in sorted(in_use.items()):
        if (revision.model, revision.version) == same:
            return number
    for new in plan.new:
        if (new.model, new.version) == same:
            return new.number
    number = next(numbers)
    kind: Role = "canary" if role == "canary" else "shadow" if role == "shadow" else "primary"
    plan.new.append(NewRevision(number, version.model, version.version, ref, kind))
    return number


def preview(project: str, name: str, spec: DeploymentSpec, plan: Plan) -> Deployment:
    """The deployment a dry run would create."""
    now = utcnow()
    return Deployment(
        id="",
        project=project,
        name=name,
        spec=spec,
        status=DeploymentStatus.PENDING,
        status_message="dry run: nothing was created",
        traffic=plan.traffic,
        shadow_revision=plan.roles.shadow,
        canary_revision=plan.roles.canary,
        revisions=[
            Revision(
                number=n.number,
                model=n.model,
                version=n.version,
                ref=n.ref,
                role=n.role,
                created_at=now,
            )
            for n in plan.new
        ],
        created_at=now,
        updated_at=now,
    )
