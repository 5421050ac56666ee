"""``ModelRef``: the one way to name a model version, validated where it is parsed.

Grammar (``[project:]name[/version | @alias]``)::

    churn                  the newest READY version of model "churn"
    churn/3                version 3 of "churn", whatever its status
    churn@champion         the version the alias "champion" points at
    fraud:churn@champion   the same, in project "fraud" (no prefix: the caller's project)

``project``, ``name`` and ``alias`` follow the project-name rule (a lowercase letter, then up
to 62 lowercase letters, digits, ``_`` or ``-``); ``version`` is a positive integer of at most
9 digits. The whole reference is at most ``MAX_REF_LENGTH`` characters, so no input is ever
matched against the pattern at an unbounded length. ``str(ModelRef.parse(text)) == text``.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict

from loopml.core.errors import ValidationError

_NAME = r"[a-z][a-z0-9_-]{0,62}"
NAME_PATTERN = re.compile(rf"^{_NAME}$")
ALIAS_PATTERN = NAME_PATTERN
MAX_VERSION = 999_999_999
MAX_REF_LENGTH = 200
REF_PATTERN = re.compile(
    rf"^(?:(?P<project>{_NAME}):)?(?P<name>{_NAME})"
    rf"(?:/(?P<version>[1-9][0-9]{{0,8}})|@(?P<alias>{_NAME}))?$"
)
"""The reference grammar as one regular expression."""
LOCAL_REF_PATTERN = re.compile(
    rf"^(?P<name>{_NAME})(?:/(?P<version>[1-9][0-9]{{0,8}})|@(?P<alias>{_NAME}))?$"
)
"""A reference without a project prefix: what routes under ``/projects/{project}`` take."""

_RULE = "a lowercase letter followed by up to 62 lowercase letters, digits, '_' or '-'"


def _invalid(field: str, value: object, expected: str) -> ValidationError:
    return ValidationError(
        f"invalid {field} {repr(value)[:80]}: expected {expected}",
        details={"field": field},
    )


def validate_model_name(name: str) -> str:
    """Return ``name`` if it is a valid registered-model name, else raise ``ValidationError``.

    The rule is the project-name rule: the name appears in URLs and references.
    """
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise _invalid("model name", name, f"{_RULE} (for example 'churn-model')")
    return name


def validate_alias(alias: str) -> str:
    """Return ``alias`` if it is a valid alias (``champion``), else raise ``ValidationError``."""
    if not isinstance(alias, str) or not ALIAS_PATTERN.fullmatch(alias):
        raise _invalid("alias", alias, f"{_RULE} (for example 'champion')")
    return alias


def validate_version_number(version: int) -> int:
    """Return ``version`` if it is an integer from 1 to ``MAX_VERSION``."""
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= MAX_VERSION:
        raise _invalid("version", version, f"an integer from 1 to {MAX_VERSION}")
    return version


class ModelRef(BaseModel):
    """A reference to a model version: by number, by alias, or the newest READY one.

    Example:
        >>> ref = ModelRef.parse("churn@champion")
        >>> (ref.name, ref.alias, str(ref))
        ('churn', 'champion', 'churn@champion')

    Attributes:
        name: the registered model's name.
        project: the project, when the reference names one (``proj:churn``).
        version: a version number (``churn/3``), or ``None``.
        alias: an alias (``churn@champion``), or ``None``. At most one of the two is set.
    """

    model_config = ConfigDict(frozen=True)

    name: str
    project: str | None = None
    version: int | None = None
    alias: str | None = None

    def model_post_init(self, __context: Any) -> None:
        """Validate every part, so a ``ModelRef`` built by hand is as safe as a parsed one."""
        validate_model_name(self.name)
        if self.project is not None and not NAME_PATTERN.fullmatch(self.project):
            raise _invalid("project name", self.project, _RULE)
        if self.version is not None:
            validate_version_number(self.version)
        if self.alias is not None:
            validate_alias(self.alias)
        if self.version is not None and self.alias is not None:
            raise ValidationError(
                "a model reference names a version or an alias, not both: use "
                f"'{self.name}/{self.version}' or '{self.name}@{self.alias}'",
                details={"field": "ref"},
            )

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        """Parse ``[project:]name[/version|@alias]``.

        Raises:
            ValidationError: the text does not follow the grammar; the message shows it.
        """
        if not isinstance(text, str) or len(text) > MAX_REF_LENGTH:
            raise _invalid(
                "model reference", text, f"a string of at most {MAX_REF_LENGTH} characters"
            )
        match = REF_PATTERN.fullmatch(text)
        if match is None:
            raise _invalid(
                "model reference",
                text,
                "'name', 'name/VERSION' or 'name@alias', optionally prefixed by 'project:' "
                f"(names and aliases: {_RULE}; VERSION: 1 to {MAX_VERSION}), "
                "for example 'churn@champion' or 'churn/3'",
            )
        version = match["version"]
        return cls(
            name=match["name"],
            project=match["project"],
            version=int(version) if version else None,
            alias=match["alias"],
        )

    @property
    def is_latest(self) -> bool:
        """Whether the reference means "the newest READY version" (no version, no alias)."""
        return self.version is None and self.alias is None

    def in_project(self, project: str) -> ModelRef:
        """This reference, qualified with ``project`` when it names none."""
        if self.project:
            return self
        return ModelRef(name=self.name, project=project, version=self.version, alias=self.alias)

    def __str__(self) -> str:
        text = f"{self.project}:{self.name}" if self.project else self.name
        if self.version is not None:
            return f"{text}/{self.version}"
        if self.alias is not None:
            return f"{text}@{self.alias}"
        return text
