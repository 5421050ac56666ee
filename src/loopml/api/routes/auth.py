"""Logins, browser sessions, API tokens, users and project members: /api/v1/auth, /tokens,
/admin/tokens, /users, /members."""

from __future__ import annotations

from datetime import datetime, timedelta

from fastapi import APIRouter, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from loopml.api.routes._strict_json import StrictJSONRoute
from loopml.api.schemas.common import ERROR_RESPONSES, project_path
from loopml.auth import service
from loopml.core.auth import (
    DEFAULT_TOKEN_DAYS,
    MAX_TOKEN_DAYS,
    USER_NAME_PATTERN,
    ApiToken,
    Membership,
    Principal,
    Role,
    User,
)
from loopml.core.errors import ValidationError
from loopml.faces.authz import (
    clear_session_cookies,
    password_login,
    principal_of,
    session_token,
    set_session_cookies,
)
from loopml.faces.context import Actor, Ctx, get_running

router = APIRouter(route_class=StrictJSONRoute, tags=["auth"], responses=ERROR_RESPONSES)
PROJECT = project_path("The project whose members are listed or set.")
TOKEN = Path(
    description="One of your tokens: its id (32 lowercase hex characters) or its prefix "
    "(8 characters, with or without 'lm_').",
    max_length=32,
    pattern="^([0-9a-f]{32}|(lm_)?[a-z0-9]{8})$",
)
PREFIX = Path(
    description="A token's prefix (8 characters, with or without 'lm_'), as in a token "
    "found in a log: lm_3f9a1c2b_...",
    max_length=11,
    pattern="^(lm_)?[a-z0-9]{8}$",
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
    expires_in_days: int = Field(default=DEFAULT_TOKEN_DAYS, ge=1, le=MAX_TOKEN_DAYS)


class SessionLogin(BaseModel):
    """A user's name and password; the answer starts a browser session (cookies)."""

    model_config = ConfigDict(extra="forbid")

    user: str = Field(min_length=1, max_length=63)
    password: str = Field(min_length=1, max_length=1024)


class SessionStarted(BaseModel):
    """A browser session: its token is in the ``HttpOnly`` cookie only, never in the body."""

    user: str
    token_id: str = Field(description="The session token's id, as `GET /api/v1/tokens` lists it.")
    expires_at: datetime
    csrf_token: str = Field(
        description="Send it as `X-CSRF-Token` on every POST, PUT, PATCH and DELETE made "
        "with the session cookie (also in the readable `loopml_csrf` cookie)."
    )


class TokenCreate(BaseModel):
    """A new token of the calling user: its scope, role, narrowing and expiry."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    project: str | None = Field(default=None, max_length=63)
    role: str | None = _ROLE
    resource: str | None = Field(default=None, max_length=140)
    expires_in_days: int = Field(
        default=DEFAULT_TOKEN_DAYS,
        ge=1,
        le=MAX_TOKEN_DAYS,
        description="Days until the token expires. Every token expires: null is refused.",
    )

    @field_validator("expires_in_days", mode="before")
    @classmethod
    def _expiry_is_required(cls, value: object) -> object:
        if value is None:
            raise ValueError(
                f"may not be null: every token expires, in 1 to {MAX_TOKEN_DAYS} days "
                f"({DEFAULT_TOKEN_DAYS} if left out)"
            )
        return value


class TokenList(BaseModel):
    """The calling user's tokens (never their secrets)."""

    items: list[ApiToken]


class UserCreate(BaseModel):
    """A new user."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=63)
    password: str = Field(min_length=1, max_length=1024)
    platform_admin: bool = False


class UserUpdate(BaseModel):
    """A change to a user: disable it (its tokens and sessions are revoked) or enable it."""

    model_config = ConfigDict(extra="forbid")

    disabled: bool


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
    lifetime = timedelta(days=body.expires_in_days)
    return password_login(
        request, ctx.store, body.user, body.password, lifetime=lifetime, name="login"
    )


@router.post("/api/v1/auth/session", status_code=201)
def start_session(
    body: SessionLogin, request: Request, response: Response, ctx: Ctx
) -> SessionStarted:
    """Log a browser in: the session token goes into the `loopml_session` cookie (`HttpOnly`,
    `SameSite=Lax`, `Secure` over https) for `auth.session_hours`, and its CSRF token into the
    answer and the readable `loopml_csrf` cookie. Failed attempts count as for a login."""
    if not ctx.settings.auth.enabled:
        raise ValidationError(
            "authentication is off on this server (auth.enabled = false): there is no "
            "session to start"
        )
    lifetime = timedelta(hours=ctx.settings.auth.session_hours)
    made = password_login(
        request, ctx.store, body.user, body.password, lifetime=lifetime, name="session"
    )
    # A token just made carries its secret, and a login's always expires.
    assert made.token is not None
    assert made.expires_at is not None
    csrf = set_session_cookies(response, request, made.token, int(lifetime.total_seconds()))
    return SessionStarted(
        user=made.user, token_id=made.id, expires_at=made.expires_at, csrf_token=csrf
    )


@router.delete("/api/v1/auth/session", status_code=204)
def end_session(request: Request, ctx: Ctx, actor: Actor) -> Response:
    """Log a browser out: revoke the session token its cookie carries (refused from the next
    request on) and clear both cookies. Like every state change made with the session
    cookie, it needs `X-CSRF-Token`. With a bearer header instead, nothing is revoked (that
    token is no session), and the cookies are cleared all the same."""
    caller = _caller(request)
    if session_token(request) is not None and caller.token_id is not None:
        service.revoke_token(ctx.store, caller.user, caller.token_id, actor=actor)
    answer = Response(status_code=204)
    clear_session_cookies(answer, request)
    return answer


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
        get_running(request).auth_key,
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


@router.delete("/api/v1/tokens/{token}", status_code=204)
def revoke_token(request: Request, ctx: Ctx, actor: Actor, token: str = TOKEN) -> Response:
    """Revoke one of the calling user's tokens, by id or prefix; it is refused from the next
    request on."""
    service.revoke_token(ctx.store, _caller(request).user, token, actor=actor)
    return Response(status_code=204)


@router.get("/api/v1/admin/tokens/{prefix}")
def find_token(ctx: Ctx, prefix: str = PREFIX) -> ApiToken:
    """Any user's token, by its prefix: whose it is, its scope, role, expiry, last use and
    revocation (platform admins only; never the secret)."""
    return service.find_token(ctx.store, prefix)


@router.delete("/api/v1/admin/tokens/{prefix}", status_code=204)
def revoke_any_token(ctx: Ctx, actor: Actor, prefix: str = PREFIX) -> Response:
    """Revoke any user's token by its prefix, such as one found in a log (platform admins
    only); recorded as `token.revoked` with the admin as its actor."""
    service.revoke_any_token(ctx.store, prefix, actor=actor)
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


@router.patch("/api/v1/users/{user}")
def update_user(
    body: UserUpdate, request: Request, ctx: Ctx, actor: Actor, user: str = USER
) -> User:
    """Disable a user (platform admins): every token it has, browser sessions and CLI logins
    included, is revoked at once and it can no longer log in. You cannot disable yourself
    nor the last platform admin (409). `{"disabled": false}` lets it log in again."""
    if not body.disabled:
        return service.enable_user(ctx.store, user, actor=actor)
    caller = principal_of(request)
    return service.disable_user(
        ctx.store, user, caller=caller.user if caller else None, actor=actor
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


@router.delete("/api/v1/projects/{project}/members/{user}", status_code=204)
def remove_member(ctx: Ctx, actor: Actor, project: str = PROJECT, user: str = USER) -> Response:
    """Take a user's role in the project away (project admins); the project is then hidden
    from it. 404 when the user is no member."""
    service.remove_member(ctx.store, project, user, actor=actor)
    return Response(status_code=204)
