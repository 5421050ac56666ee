"""Password hashing (argon2id) and the password policy.

Cost: argon2id with 19 MiB of memory, 2 passes, 1 lane: the OWASP minimum for argon2id,
chosen so a login stays within 300 ms on the project's 2-core machine under load (measured
in docs/security.md). A stored hash made with other parameters is replaced at its user's next
successful login (``needs_rehash``, called by ``service.check_password``).
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from loopml.core.errors import ValidationError

MIN_LENGTH = 12
MAX_LENGTH = 1024
_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
# Passwords that tools and tutorials ship as defaults: refused whatever their length.
KNOWN_DEFAULTS = frozenset(
    {
        "password1234",
        "password12345",
        "password123456",
        "administrator",
        "adminadmin123",
        "changeme1234",
        "letmein12345",
        "qwertyuiop12",
        "123456789012",
        "loopmlloopml",
        "mlflowmlflow",
        "correct horse battery staple",
    }
)


def check_policy(password: str, user: str = "") -> str:
    """Return ``password`` if it may be used, else raise ``ValidationError`` saying why."""
    if len(password) < MIN_LENGTH:
        raise ValidationError(
            f"the password is {len(password)} characters; use at least {MIN_LENGTH}",
            details={"field": "password"},
        )
    if len(password) > MAX_LENGTH:
        raise ValidationError(
            f"the password is over {MAX_LENGTH} characters", details={"field": "password"}
        )
    lowered = password.lower()
    if lowered in KNOWN_DEFAULTS or (user and user.lower() in lowered) or len(set(password)) < 4:
        raise ValidationError(
            "the password is a known default, contains the user name, or repeats too few "
            "characters; choose another",
            details={"field": "password"},
        )
    return password


def hash_password(password: str) -> str:
    """The argon2id hash of ``password`` (a PHC string with its salt and parameters)."""
    return _HASHER.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    """Whether ``password`` matches ``stored_hash`` (constant-time inside argon2)."""
    try:
        return bool(_HASHER.verify(stored_hash, password))
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    """Whether ``stored_hash`` was made with other parameters than today's."""
    try:
        return bool(_HASHER.check_needs_rehash(stored_hash))
    except InvalidHashError:
        return True


# A hash to check against when the user does not exist, so that "no such user" takes as
# long as "wrong password" and timing tells nothing.
DUMMY_HASH = _HASHER.hash("loopml: no such user, timing decoy")
