"""A snapshot's secrets, encrypted with a key derived from the operator's passphrase."""

from __future__ import annotations

import base64
import os

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from loopml.backup.manifest import SecretsInfo
from loopml.core.errors import ValidationError

MIN_PASSPHRASE = 12
# scrypt's interactive-login cost (RFC 7914 suggests N=2**14 at least): about 50 ms here.
_N, _R, _P = 2**15, 8, 1


def _key(passphrase: str, info: SecretsInfo) -> bytes:
    kdf = Scrypt(salt=bytes.fromhex(info.salt), length=32, n=info.n, r=info.r, p=info.p)
    return base64.urlsafe_b64encode(kdf.derive(passphrase.encode()))


def check_passphrase(passphrase: str) -> None:
    """Raises ``ValidationError`` for a passphrase shorter than 12 characters."""
    if len(passphrase) < MIN_PASSPHRASE:
        raise ValidationError(
            f"the backup passphrase must have {MIN_PASSPHRASE} characters or more",
            details={"field": "passphrase"},
        )


def encrypt(data: bytes, passphrase: str) -> tuple[bytes, SecretsInfo]:
    """``data`` encrypted under ``passphrase``, and what decrypting it needs besides.

    Raises:
        ValidationError: the passphrase is shorter than 12 characters.
    """
    check_passphrase(passphrase)
    info = SecretsInfo(salt=os.urandom(16).hex(), n=_N, r=_R, p=_P)
    return Fernet(_key(passphrase, info)).encrypt(data), info


def decrypt(token: bytes, passphrase: str, info: SecretsInfo) -> bytes:
    """The secrets ``encrypt`` sealed.

    Raises:
        ValidationError: wrong passphrase (or altered ciphertext).
    """
    try:
        return Fernet(_key(passphrase, info)).decrypt(token)
    except InvalidToken:
        raise ValidationError(
            "the passphrase does not open this backup's secrets",
            details={"field": "passphrase"},
        ) from None
