"""Tokens, passwords, the failure limiter and the install secret, without a server."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from loopml.auth import passwords, tokens
from loopml.auth.install import SECRET_FILE, load_or_create_secret
from loopml.auth.ratelimit import FailureLimiter
from loopml.core.errors import ConfigurationError, RateLimitedError, ValidationError


def test_tokens_are_random_prefixed_and_stored_only_as_a_keyed_hash() -> None:
    token, prefix = tokens.new_token()
    other, _ = tokens.new_token()
    assert token != other
    assert token.startswith(f"lm_{prefix}_")
    assert tokens.prefix_of(token) == prefix
    assert tokens.prefix_of("lm_short_x") is None
    assert tokens.prefix_of(token + "x") is None
    stored = tokens.token_hash(b"k" * 32, token)
    assert token not in stored
    assert tokens.matches(b"k" * 32, token, stored)
    assert not tokens.matches(b"j" * 32, token, stored)  # another install's secret
    assert not tokens.matches(b"k" * 32, other, stored)


def _spy_compare_digest(
    monkeypatch: pytest.MonkeyPatch, module: object
) -> list[tuple[str | bytes, str | bytes]]:
    """Replace ``hmac`` in ``module`` only by one whose ``compare_digest`` records its calls."""
    import hmac
    from types import SimpleNamespace

    calls: list[tuple[str | bytes, str | bytes]] = []

    def compare_digest(a: str | bytes, b: str | bytes) -> bool:
        calls.append((a, b))
        return hmac.compare_digest(a, b)

    monkeypatch.setattr(
        module, "hmac", SimpleNamespace(new=hmac.new, compare_digest=compare_digest)
    )
    return calls


def test_every_token_check_is_one_constant_time_comparison(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A plain == would leak how much of the hash matched. Each check, right or wrong, with a
    # known prefix, an unknown one or a malformed token, makes exactly one hmac.compare_digest
    # of two 64-character hashes: the same work whatever the token.
    from loopml.auth import service
    from loopml.core.auth import Principal
    from loopml.core.errors import UnauthenticatedError
    from loopml.store import MetadataStore

    key = b"k" * 32
    store = MetadataStore(f"sqlite:///{tmp_path / 'db.sqlite'}")
    store.upgrade()
    service.create_user(store, "root", "a long admin passphrase", platform_admin=True, actor="t")
    root = Principal(user="root", token_id=None, platform_admin=True, roles={})
    made = service.create_token(store, key, root, name="t")
    assert made.token is not None
    stored = tokens.token_hash(key, made.token)
    calls = _spy_compare_digest(monkeypatch, tokens)

    assert service.authenticate(store, key, made.token).user == "root"
    assert calls == [(stored, stored)]
    wrong_secret = made.token[:-1] + ("A" if made.token[-1] != "A" else "B")
    unknown_prefix, _ = tokens.new_token()
    for token, against in [
        (wrong_secret, stored),
        (unknown_prefix, "0" * 64),
        ("not a token at all", "0" * 64),
    ]:
        calls.clear()
        with pytest.raises(UnauthenticatedError):
            service.authenticate(store, key, token)
        assert calls == [(tokens.token_hash(key, token), against)], token
        assert len(calls[0][0]) == len(calls[0][1]) == 64
    store.dispose()


def test_a_login_verifies_one_hash_whether_or_not_the_user_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An unknown user is checked against the decoy hash, so a login takes as long for a name
    # that does not exist as for a wrong password: the time tells no one which names exist.
    from loopml.auth import service
    from loopml.core.errors import UnauthenticatedError
    from loopml.store import MetadataStore, users

    store = MetadataStore(f"sqlite:///{tmp_path / 'db.sqlite'}")
    store.upgrade()
    service.create_user(store, "root", "a long admin passphrase", platform_admin=True, actor="t")
    with store.session() as session:
        found = users.password_hash(session, "root")
    assert found is not None
    real = passwords.verify_password
    checked: list[str] = []

    def verify_password(stored_hash: str, password: str) -> bool:
        checked.append(stored_hash)
        return real(stored_hash, password)

    monkeypatch.setattr(passwords, "verify_password", verify_password)
    assert service.check_password(store, "root", "a long admin passphrase").name == "root"
    for name, password in [("root", "a wrong passphrase!"), ("nobody", "a long admin passphrase")]:
        with pytest.raises(UnauthenticatedError, match="wrong user name or password"):
            service.check_password(store, name, password)
    assert checked == [found[1], found[1], passwords.DUMMY_HASH]
    store.dispose()


def test_the_webhook_secret_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    from loopml.core.errors import PermissionDeniedError
    from loopml.pipelines import automation_service

    stored = automation_service.hash_secret("the right secret")
    calls = _spy_compare_digest(monkeypatch, automation_service)
    automation_service.check_secret("the right secret", stored)
    with pytest.raises(PermissionDeniedError, match="wrong secret"):
        automation_service.check_secret("a wrong secret", stored)
    assert calls == [(stored, stored), (automation_service.hash_secret("a wrong secret"), stored)]


def test_password_policy() -> None:
    for weak in ["", "short", "x" * 11, "password1234", "Password1234", "aaaaaaaaaaaaaaa"]:
        with pytest.raises(ValidationError):
            passwords.check_policy(weak)
    with pytest.raises(ValidationError, match="user name"):
        passwords.check_policy("ada-lovelace-1815", "ada")
    assert passwords.check_policy("a long admin passphrase") == "a long admin passphrase"


def test_password_hashes_are_argon2id_salted_and_checked() -> None:
    first = passwords.hash_password("a long admin passphrase")
    second = passwords.hash_password("a long admin passphrase")
    assert first.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert first != second  # salted
    assert passwords.verify_password(first, "a long admin passphrase")
    assert not passwords.verify_password(first, "a long admin passphrasE")
    assert not passwords.verify_password("not a hash", "x")
    assert not passwords.needs_rehash(first)
    assert passwords.needs_rehash("$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo")


def test_the_limiter_counts_failures_per_source_within_a_window() -> None:
    now = [0.0]
    limiter = FailureLimiter(3, window_s=60, clock=lambda: now[0])
    for _ in range(3):
        limiter.check("10.0.0.1")
        limiter.fail("10.0.0.1")
    with pytest.raises(RateLimitedError) as caught:
        limiter.check("10.0.0.1")
    assert caught.value.status == 429
    assert 1 <= caught.value.details["retry_after_s"] <= 61
    limiter.check("10.0.0.2")  # another source is not affected
    now[0] = 61.0
    limiter.check("10.0.0.1")  # the window has passed


def test_the_install_secret_is_made_once_and_kept_private(tmp_path: Path) -> None:
    secret = load_or_create_secret(tmp_path)
    assert len(secret) == 32
    path = tmp_path / SECRET_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_secret(tmp_path) == secret
    os.chmod(path, 0o644)
    with pytest.raises(ConfigurationError, match="chmod 600"):
        load_or_create_secret(tmp_path)


def test_the_token_cache_forgets_a_revoked_token_after_its_ttl(tmp_path: Path) -> None:
    from loopml.auth import service
    from loopml.auth.cache import TokenCache
    from loopml.core.auth import Principal
    from loopml.core.clock import utcnow
    from loopml.core.errors import UnauthenticatedError
    from loopml.store import MetadataStore, api_tokens

    store = MetadataStore(f"sqlite:///{tmp_path / 'db.sqlite'}")
    store.upgrade()
    service.create_user(store, "root", "a long admin passphrase", platform_admin=True, actor="t")
    root = Principal(user="root", token_id=None, platform_admin=True, roles={})
    made = service.create_token(store, b"k" * 32, root, name="t")
    assert made.token is not None
    now = [0.0]
    cache = TokenCache(store, b"k" * 32, ttl_s=5, clock=lambda: now[0])
    assert cache.principal(made.token).user == "root"
    with store.session() as session:
        api_tokens.revoke(session, utcnow(), token_id=made.id, user="root", actor="t")
    assert cache.principal(made.token).user == "root"  # remembered, within the TTL
    now[0] = 5.1
    with pytest.raises(UnauthenticatedError, match="revoked"):
        cache.principal(made.token)
    store.dispose()


def test_serving_paths_name_their_deployment_as_the_gateway_resolves_it() -> None:
    from loopml.core.errors import NotFoundError
    from loopml.platform.serving_auth import deployment_of

    def by_model(name: str) -> str:  # the gateway's rule: a model name reaches its deployment
        if name == "churn-model":
            return "churn-api"
        raise NotFoundError(name)

    assert deployment_of("/deployments/a/predict") == ("default", "a")
    assert deployment_of("/projects/p/deployments/a/v2/models/a/infer") == ("p", "a")
    assert deployment_of("/v2/models/churn-model/infer", by_model) == ("default", "churn-api")
    assert deployment_of("/v2/models/ghost/infer", by_model) == ("default", "ghost")
    assert deployment_of("/v2/health/live", by_model) is None
    assert deployment_of("/api/v1/projects", by_model) is None


def test_a_token_is_named_by_its_id_or_its_prefix_however_written() -> None:
    from loopml.core.auth import parse_token_ref

    token, prefix = tokens.new_token()
    assert parse_token_ref("0123456789abcdef0123456789abcdef") == (
        "id",
        "0123456789abcdef0123456789abcdef",
    )
    for written in (prefix, f"lm_{prefix}", token):
        assert parse_token_ref(written) == ("prefix", prefix)
    for wrong in ("", "lm_", "abc", "ABCDEFGH", "0123456789abcdef", "lm_abcdefgh!", "x" * 40):
        with pytest.raises(ValidationError, match="names no token"):
            parse_token_ref(wrong)
    # A mistyped whole token is never echoed past a prefix's length.
    with pytest.raises(ValidationError) as caught:
        parse_token_ref("LM_" + token[3:])
    assert token[12:] not in caught.value.message
