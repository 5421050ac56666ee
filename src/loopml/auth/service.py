"""Authentication and authorization services: users, logins, tokens, and the check itself.

Each function takes the store (and the install's secret where tokens are hashed) as
arguments and opens its own transactions.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from loopml.auth import passwords, tokens
from loopml.auth.permissions import Action, Rule
from loopml.core.auth import (
    DEFAULT_TOKEN_DAYS,
    MAX_TOKEN_DAYS,
    SERVER_USER,
    ApiToken,
    Membership,
    Principal,
    Role,
    User,
    parse_token_ref,
    validate_resource,
)
from loopml.core.clock import utcnow
from loopml.core.errors import (
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
    ValidationError,
)
from loopml.store import MetadataStore, api_tokens, project_lookup, runs, users

# last_used_at is written at most this often per token, not on every request.
_TOUCH_EVERY = timedelta(minutes=1)


def create_user(
    store: MetadataStore, name: str, password: str, *, platform_admin: bool, actor: str
) -> User:
    """Add a user; the password must pass the policy (12 characters or more, not a default).

    Raises:
        ValidationError: a bad name or a refused password.
        AlreadyExistsError: the name is taken.
    """
    passwords.check_policy(password, name)
    digest = passwords.hash_password(password)
    with store.session() as session:
        return users.create(session, name, digest, platform_admin=platform_admin, actor=actor)


def check_password(store: MetadataStore, name: str, password: str) -> User:
    """The user whose password this is; a hash made with older parameters than
    ``passwords``' is replaced by one with today's.

    Raises:
        UnauthenticatedError: no such user, a disabled one, or a wrong password (one message
            for all three, and the same time: a missing user is checked against a decoy hash).
    """
    with store.session() as session:
        found = users.password_hash(session, name)
    stored = found[1] if found else passwords.DUMMY_HASH
    valid = passwords.verify_password(stored, password)
    if found is None or not valid:
        raise UnauthenticatedError("wrong user name or password")
    if found[0].disabled:
        # Said only to someone who knows the password: it tells nothing to a guesser.
        raise UnauthenticatedError(
            f"user {name!r} is disabled: ask a platform admin to enable it again",
            details={"user": name, "disabled": True},
        )
    if passwords.needs_rehash(stored):
        # Only now is the password at hand: a hash made with older (weaker or costlier)
        # parameters moves to today's on its user's next successful login.
        with store.session() as session:
            users.set_password_hash(session, name, passwords.hash_password(password))
    return found[0]


def login(
    store: MetadataStore,
    key: bytes,
    name: str,
    password: str,
    *,
    lifetime: timedelta,
    token_name: str = "login",  # noqa: S107 (the token's label, not a secret)
) -> ApiToken:
    """Trade a user's password for a new API token, with the user's roles, that expires
    after ``lifetime`` (``token_name`` tells a browser session from a CLI login in the
    user's token list).

    Raises:
        UnauthenticatedError: a wrong name or password, or a disabled user (the caller
            counts these as failed attempts).
        ValidationError: a lifetime outside 1 hour to ``MAX_TOKEN_DAYS``.
    """
    if not timedelta(hours=1) <= lifetime <= timedelta(days=MAX_TOKEN_DAYS):
        raise ValidationError(f"a login lasts 1 hour to {MAX_TOKEN_DAYS} days")
    user = check_password(store, name, password)
    with store.session() as session:
        roles = users.roles_of(session, users.user_row(session, user.name).id)
    caller = Principal(
        user=user.name, token_id=None, platform_admin=user.platform_admin, roles=roles
    )
    return _issue(store, key, caller, name=token_name, lifetime=lifetime)


def server_token(store: MetadataStore, key: bytes, *, lifetime: timedelta) -> ApiToken:
    """A new token of ``SERVER_USER`` (made on first use) for the server's embedded worker;
    the server keeps it in memory and revokes it when it stops.

    Raises:
        ValidationError: a lifetime outside 1 hour to ``MAX_TOKEN_DAYS``.
    """
    if not timedelta(hours=1) <= lifetime <= timedelta(days=MAX_TOKEN_DAYS):
        raise ValidationError(f"a token lasts 1 hour to {MAX_TOKEN_DAYS} days")
    with store.session() as session:
        try:
            users.get(session, SERVER_USER)
        except NotFoundError:
            digest = passwords.hash_password(secrets.token_urlsafe(32))
            users.create(session, SERVER_USER, digest, platform_admin=True, actor="server")
    caller = Principal(user=SERVER_USER, token_id=None, platform_admin=True, roles={})
    return _issue(store, key, caller, name="embedded-worker", lifetime=lifetime)


def count_admins(store: MetadataStore) -> int:
    """How many enabled platform admins there are."""
    with store.session() as session:
        return users.count_admins(session)


def list_users(store: MetadataStore) -> list[User]:
    """Every user, by name."""
    with store.session() as session:
        return users.list_(session)


def list_members(store: MetadataStore, project: str) -> list[Membership]:
    """A project's members and their roles, by user name."""
    with store.session() as session:
        return users.members(session, project)


def set_role(
    store: MetadataStore, project: str, user: str, role: Role, *, actor: str
) -> Membership:
    """Give ``user`` the ``role`` in ``project``."""
    with store.session() as session:
        return users.set_role(session, project, user, role, actor=actor)


def remove_member(store: MetadataStore, project: str, user: str, *, actor: str) -> None:
    """Take ``user``'s role in ``project`` away: the project is then hidden from it, as
    from anyone without a role (its tokens keep working elsewhere).

    Raises:
        NotFoundError: no such project or user, or not a member of the project.
    """
    with store.session() as session:
        users.remove_member(session, project, user, actor=actor)


def disable_user(store: MetadataStore, name: str, *, caller: str | None, actor: str) -> User:
    """Disable ``name``: every token it has (browser sessions and CLI logins included) is
    revoked in the same transaction, and it can no longer log in. Nothing it made is
    removed; ``enable_user`` lets it log in again (with new tokens).

    Raises:
        NotFoundError: no such user.
        ConflictError: ``name`` is the caller, or the last enabled platform admin.
    """
    if caller is not None and caller == name:
        raise ConflictError(
            "you cannot disable yourself: ask another platform admin", details={"user": name}
        )
    with store.session() as session:
        user = users.get(session, name)
        last = user.platform_admin and not user.disabled and name != SERVER_USER
        if last and users.count_admins(session) <= 1:
            raise ConflictError(
                f"{name!r} is the last platform admin: make another one first "
                "(loopml users create NAME --admin)",
                details={"user": name},
            )
        made = users.set_disabled(session, name, True, actor=actor)
        api_tokens.revoke_all(session, name, utcnow(), actor=actor)
        return made


def enable_user(store: MetadataStore, name: str, *, actor: str) -> User:
    """Let a disabled user log in again (its old tokens stay revoked).

    Raises:
        NotFoundError: no such user.
    """
    with store.session() as session:
        return users.set_disabled(session, name, False, actor=actor)


def create_token(
    store: MetadataStore,
    key: bytes,
    caller: Principal,
    *,
    name: str,
    project: str | None = None,
    role: Role | None = None,
    resource: str | None = None,
    expires_in_days: int = DEFAULT_TOKEN_DAYS,
) -> ApiToken:
    """Make a token for the calling user; its secret is in the answer, and never again.

    Every token expires, in 1 to ``MAX_TOKEN_DAYS`` days. The token's role is at most the
    caller's (in ``project``, or anywhere for a platform admin), and a token made with a
    token is never wider than that token: the same project, the same resource.

    Raises:
        ValidationError: a bad resource, a missing or out-of-range expiry, or a resource
            without a project.
        PermissionDeniedError: a role higher than the caller's, or a resource other than the
            calling token's.
        NotFoundError: a project the caller cannot see.
    """
    _check_expiry(expires_in_days)
    if resource is not None and project is None:
        raise ValidationError(
            "a token narrowed to a resource needs a project", details={"field": "project"}
        )
    if resource is not None:
        validate_resource(resource)
    if caller.resource is not None and resource != caller.resource:
        raise PermissionDeniedError(
            f"a token narrowed to {caller.resource} can only make tokens narrowed to it "
            f"(resource={caller.resource!r})",
            details={"resource": caller.resource},
        )
    lifetime = timedelta(days=expires_in_days)
    return _issue(
        store,
        key,
        caller,
        name=name,
        project=project,
        role=role,
        resource=resource,
        lifetime=lifetime,
    )


def _issue(
    store: MetadataStore,
    key: bytes,
    caller: Principal,
    *,
    name: str,
    lifetime: timedelta,
    project: str | None = None,
    role: Role | None = None,
    resource: str | None = None,
) -> ApiToken:
    ceiling = _ceiling(caller, project)
    wanted = role or ceiling
    if wanted > ceiling:
        raise PermissionDeniedError(
            f"a token may not have a higher role ({wanted.label}) than its creator "
            f"({ceiling.label})",
            details={"role": wanted.label},
        )
    secret, prefix = tokens.new_token()
    expires = utcnow() + lifetime
    with store.session() as session:
        project_id = project_lookup.project_id(session, project) if project else None
        made = api_tokens.create(
            session,
            user=caller.user,
            name=name,
            prefix=prefix,
            token_hash=tokens.token_hash(key, secret),
            project_id=project_id,
            project=project,
            role=wanted,
            resource=resource,
            expires_at=expires,
            actor=caller.actor,
        )
    return made.model_copy(update={"token": secret})


def list_tokens(store: MetadataStore, user: str) -> list[ApiToken]:
    """A user's tokens, newest first (never their secrets)."""
    with store.session() as session:
        return api_tokens.list_(session, user)


def _check_expiry(days: object) -> None:
    # Tokens made before expiry was required may have none (expires_at NULL); they keep
    # working until revoked, but no new token is made without one.
    if days is None:
        raise ValidationError(
            "expires_in_days may not be null: every token expires, in 1 to "
            f"{MAX_TOKEN_DAYS} days ({DEFAULT_TOKEN_DAYS} by default)",
            details={"field": "expires_in_days"},
        )
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= MAX_TOKEN_DAYS:
        raise ValidationError(
            f"expires_in_days must be a whole number of days from 1 to {MAX_TOKEN_DAYS}",
            details={"field": "expires_in_days"},
        )


def revoke_token(store: MetadataStore, user: str, ref: str, *, actor: str) -> ApiToken:
    """Revoke one of ``user``'s tokens, named by its id or its prefix (``lm_3f9a1c2b``); it
    is refused from the next request on.

    Raises:
        ValidationError: ``ref`` is neither an id nor a prefix.
        NotFoundError: the user has no such token.
    """
    kind, value = parse_token_ref(ref)
    token_id, prefix = (value, None) if kind == "id" else (None, value)
    with store.session() as session:
        return api_tokens.revoke(
            session, utcnow(), token_id=token_id, prefix=prefix, user=user, actor=actor
        )


def find_token(store: MetadataStore, prefix: str) -> ApiToken:
    """Any user's token by its prefix (``lm_3f9a1c2b`` or ``3f9a1c2b``): what a platform
    admin looks up after finding a token in a log. Never its secret.

    Raises:
        ValidationError: not a prefix.
        NotFoundError: no token has this prefix.
    """
    with store.session() as session:
        return api_tokens.find(session, prefix=_prefix(prefix))


def revoke_any_token(store: MetadataStore, prefix: str, *, actor: str) -> ApiToken:
    """Revoke any user's token by its prefix (a platform admin's answer to a leak); the
    ``token.revoked`` event names the token's user and ``actor``, who revoked it.

    Raises:
        ValidationError: not a prefix.
        NotFoundError: no token has this prefix.
    """
    with store.session() as session:
        return api_tokens.revoke(session, utcnow(), prefix=_prefix(prefix), actor=actor)


def _prefix(text: str) -> str:
    kind, value = parse_token_ref(text)
    if kind != "prefix":
        raise ValidationError(
            "expected a token's prefix (8 characters, as in lm_3f9a1c2b), not its id",
            details={"field": "prefix"},
        )
    return value


def _ceiling(caller: Principal, project: str | None) -> Role:
    if caller.project is not None and project != caller.project:
        raise PermissionDeniedError("a token scoped to a project can only make tokens for it")
    if caller.platform_admin:
        return Role.ADMIN
    if project is None:
        return Role(max(caller.roles.values(), default=1))
    if project not in caller.roles:
        raise NotFoundError(f"project {project!r} not found", details={"project": project})
    return Role(caller.roles[project])


def authenticate(
    store: MetadataStore, key: bytes, token: str, *, now: datetime | None = None
) -> Principal:
    """The caller a bearer token stands for.

    Raises:
        UnauthenticatedError: malformed, unknown, expired or revoked token, or disabled user.
    """
    now = now or utcnow()
    prefix = tokens.prefix_of(token)
    with store.session() as session:
        found = api_tokens.by_prefix(session, prefix) if prefix else None
        # An unknown prefix is still hashed and compared, so both take the same time.
        stored = found[0].token_hash if found else "0" * 64
        valid = tokens.matches(key, token, stored)
        if found is None or not valid:
            raise UnauthenticatedError("invalid token: check LOOPML_TOKEN or run `loopml login`")
        row, user, project = found
        if row.revoked_at is not None:
            raise UnauthenticatedError(f"token {row.prefix} was revoked")
        if row.expires_at is not None and row.expires_at <= now:
            raise UnauthenticatedError(f"token {row.prefix} expired; make a new one")
        if user.disabled:
            raise UnauthenticatedError(f"user {user.name!r} is disabled")
        if row.last_used_at is None or now - row.last_used_at > _TOUCH_EVERY:
            api_tokens.touch(session, row.id, now)
        roles = users.roles_of(session, user.id)
        return _principal(
            user.name, user.platform_admin, roles, row.id, row.role, project, row.resource
        )


def _principal(
    user: str,
    platform_admin: bool,
    roles: dict[str, int],
    token_id: str,
    token_role: int,
    project: str | None,
    resource: str | None,
) -> Principal:
    if project is not None:
        base = Role.ADMIN if platform_admin else roles.get(project)
        roles = {project: min(int(base), token_role)} if base else {}
        return Principal(
            user=user,
            token_id=token_id,
            platform_admin=False,
            roles=roles,
            project=project,
            resource=resource,
        )
    capped = {p: min(r, token_role) for p, r in roles.items()}
    admin = platform_admin and token_role >= Role.ADMIN
    return Principal(user=user, token_id=token_id, platform_admin=admin, roles=capped)


def run_experiment(store: MetadataStore, project: str, run_id: str) -> str | None:
    """The experiment of a run, which a token narrowed to ``experiment:<name>`` is matched on
    for the run's routes; ``None`` when ``project`` has no such run."""
    with store.session() as session:
        return runs.experiment_of(session, project, run_id)


def authorize(
    caller: Principal, rule: Rule, project: str | None, resource_name: str | None
) -> None:
    """Allow the call or raise: 404 for a project the caller cannot see, 403 otherwise.

    Raises:
        NotFoundError: the route's project is one the caller has no role in (or the token's
            scope excludes): the same answer as for a project that does not exist.
        PermissionDeniedError: the caller's role is too low, or a narrowed token is used on
            another resource.
    """
    if rule.action in (Action.PUBLIC, Action.WEBHOOK, Action.USER):
        return
    if rule.action == Action.PLATFORM:
        if not caller.platform_admin:
            raise PermissionDeniedError("only a platform admin may do this")
        return
    needed = rule.action.role
    if needed is None or project is None:
        raise PermissionDeniedError("this route has no project to check a role in")
    role = Role.ADMIN if caller.platform_admin else caller.roles.get(project)
    if role is None:
        raise NotFoundError(f"project {project!r} not found", details={"project": project})
    if role < needed:
        raise PermissionDeniedError(
            f"this needs the {needed.label} role in project {project!r}; you have "
            f"{Role(role).label}",
            details={"needed": needed.label, "role": Role(role).label},
        )
    _check_resource(caller, rule, resource_name)


def _check_resource(caller: Principal, rule: Rule, resource_name: str | None) -> None:
    if caller.resource is None:
        return
    kind, _, name = caller.resource.partition(":")
    if rule.resource is None or rule.resource.kind != kind or resource_name != name:
        raise PermissionDeniedError(
            f"this token is narrowed to {caller.resource}", details={"resource": caller.resource}
        )
