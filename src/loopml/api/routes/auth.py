"""Logins, API tokens, users and project members: /api/v1/auth, /tokens, /users, /members."""

from __future__ import annotations

from fastapi import APIRouter, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from loopml.api.authz import client_source, limiter_of, principal_of
from loopml.api.context import Actor, Ctx
from loopml.api.routes._strict_json import StrictJSONRoute
from loopml.api.schemas.common import ERROR_RESPONSES, project_path
from loopml.auth import service
from loopml.core.auth import USER_NAME_PATTERN, ApiToken, Membership, Principal, Role, User
from loopml.core.errors import UnauthenticatedError, ValidationError

router = APIRouter(route_class=StrictJSONRoute, tags=["auth"], responses=ERROR_RESPONSES)
PROJECT = project_path("The project whose members are listed or set.")
TOKEN_ID = Path(
    description="A token's id (32 lowercase hex characters).",
    min_length=32,
    max_length=32,
    pattern="^[0-9a-f]{32}$",
)
USER = Path(
    description="A user name: a lowercase letter, then lowercase letters, digits, '.', '_', '-'.",
    max_length=63,
    pattern=USER_NAME_PATTERN.pattern,
)
_ROLE = Field(default=None, pattern="^(viewer|editor|admin)$")


class Login(BaseModel):
    """A user's name and password; the answer is a new API token."""

    model_config = ConfigDict(extra="forbid")

    user: str = Field(min_length=1, max_length=63)
    password: str = Field(min_length=1, max_length=1024)
    expires_in_days: int = Field(default=30, ge=1, le=service.MAX_TOKEN_DAYS)


class TokenCreate(BaseModel):
    """A new token of the calling user: its scope, role, narrowing and expiry."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    project: str | None = Field(default=None, max_length=63)
    role: str | None = _ROLE
    resource: str | None = Field(default=None, max_length=140)
    expires_in_days: int | None = Field(default=30, ge=1, le=service.MAX_TOKEN_DAYS)


class TokenList(BaseModel):
    """The calling user's tokens (never their secrets)."""

    items: list[ApiToken]


class UserCreate(BaseModel):
    """A new user."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=63)
    password: str = Field(min_length=1, max_length=1024)
    platform_admin: bool = False


class UserList(BaseModel):
    """Every user."""

    items: list[User]


class MemberSet(BaseModel):
    """A user's role in a project."""

    model_config = ConfigDict(extra="forbid")

    role: str = Field(pattern="^(viewer|editor|admin)$")


class MemberList(BaseModel):
    """A project's members."""

    items: list[Membership]


def _caller(request: Request) -> Principal:
    caller = principal_of(request)
    if caller is None:
        raise ValidationError("authentication is off on this server (auth.enabled = false)")
    return caller


@router.post("/api/v1/auth/login", status_code=201)
def login(body: Login, request: Request, ctx: Ctx) -> ApiToken:
    """Trade a user's password for a new API token (shown once). Failed attempts are counted
    per address: 429 past `auth.login_failures_per_minute`."""
    source, limiter = client_source(request), limiter_of(request)
    limiter.check(source)
    try:
        return service.login(
            ctx.store,
            request.app.state.auth_key,
            body.user,
            body.password,
            expires_in_days=body.expires_in_days,
        )
    except UnauthenticatedError:
        limiter.fail(source)
        raise


@router.get("/api/v1/auth/whoami")
def whoami(request: Request) -> Principal:
    """The caller: user, token, platform admin, and role per project."""
    return _caller(request)


@router.post("/api/v1/tokens", status_code=201)
def create_token(body: TokenCreate, request: Request, ctx: Ctx) -> ApiToken:
    """Make a token of the calling user, no stronger than the caller; the answer carries the
    token, shown once."""
    return service.create_token(
        ctx.store,
        request.app.state.auth_key,
        _caller(request),
        name=body.name,
        project=body.project,
        role=Role.parse(body.role) if body.role else None,
        resource=body.resource,
        expires_in_days=body.expires_in_days,
    )


@router.get("/api/v1/tokens")
def list_tokens(request: Request, ctx: Ctx) -> TokenList:
    """The calling user's tokens, newest first."""
    return TokenList(items=service.list_tokens(ctx.store, _caller(request).user))


@router.delete("/api/v1/tokens/{token_id}", status_code=204)
def revoke_token(request: Request, ctx: Ctx, actor: Actor, token_id: str = TOKEN_ID) -> Response:
    """Revoke one of the calling user's tokens; it is refused from the next request on."""
    service.revoke_token(ctx.store, _caller(request).user, token_id, actor=actor)
    return Response(status_code=204)


@router.get("/api/v1/users")
def list_users(ctx: Ctx) -> UserList:
    """Every user (platform admins only)."""
    return UserList(items=service.list_users(ctx.store))


@router.post("/api/v1/users", status_code=201)
def create_user(body: UserCreate, ctx: Ctx, actor: Actor) -> User:
    """Add a user (platform admins only); the password must have 12 characters or more."""
    return service.create_user(
        ctx.store, body.name, body.password, platform_admin=body.platform_admin, actor=actor
    )


@router.get("/api/v1/projects/{project}/members")
def list_members(ctx: Ctx, project: str = PROJECT) -> MemberList:
    """A project's members and their roles (project admins)."""
    return MemberList(items=service.list_members(ctx.store, project))


@router.put("/api/v1/projects/{project}/members/{user}")
def set_member(
    body: MemberSet, ctx: Ctx, actor: Actor, project: str = PROJECT, user: str = USER
) -> Membership:
    """Give a user a role in the project (project admins)."""
    return service.set_role(ctx.store, project, user, Role.parse(body.role), actor=actor)
