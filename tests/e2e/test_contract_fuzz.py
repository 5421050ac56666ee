"""Schemathesis against the live API on PostgreSQL (RELIABILITY 30): generated requests,
valid and invalid, must never get a 5xx, and every answer must match the OpenAPI document."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import running_server

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


# Routes whose body is free text that no JSON schema can describe (SQL, uploaded files): a
# schema-valid request may still be invalid SQL or an unreadable file, and 422 is the right
# answer there, so "positive data must be accepted" is the one check they are spared. Posted
# records are such a body too: schema-valid objects may not fit the table the first post made;
# and so are contracts, whose regexes must compile in RE2, which no JSON schema can say.
# A pipeline spec is YAML text in a JSON string: any string is schema-valid, few are specs.
# So is a cron expression or a time zone, and a schedule's or trigger's inputs must fit its
# pipeline; a webhook call needs the secret shown once, which no generator can know. So do a
# login (a user's password), the token routes (a token; with authentication off, as here,
# they answer 422), and users and members (a password that passes the policy, a user that
# exists). A new table's columns must have distinct names, which no JSON schema can say.
FREE_TEXT_ROUTES = (
    r"/sql$|/tables/\{table\}/(files|records|contract)$|/transforms/\{name\}(/apply)?$"
    r"|/datasets$|/pipelines$|/schedules(/\{name\})?$|/triggers(/\{name\})?$|/fire$"
    r"|/auth/(login|whoami)$|/tokens(/\{token_id\})?$|/users$|/members(/\{user\})?$"
    r"|/projects/\{project\}/tables$|/streams(/\{name\})?$|/alerts(/\{rule\})?$"
    # The monitor's paths take names whose patterns the document does not declare yet.
    r"|/deployments/\{name\}/(monitor|windows)$|/versions/\{version\}/reference$"
)


def _schemathesis(
    url: str, env: dict[str, str], *selection: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(Path(sys.executable).with_name("schemathesis")),
            "run",
            f"{url}/api/v1/openapi.json",
            *selection,
            # Stateful testing follows links the document does not declare yet: it guesses
            # that a project's `id` fills a `{project}` name parameter, which it does not.
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            "25",
            "--seed",
            "20261121",
            "--workers",
            "1",
            "--request-timeout",
            "10",
            # Text may not hold NUL (U+0000): the store refuses it on every dialect (tested
            # in tests/unit/store/test_db.py), which a JSON schema cannot express.
            "--generation-allow-x00",
            "false",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


# Two schemathesis runs over every route take minutes on a busy two-core machine.
@pytest.mark.timeout(900)
def test_generated_requests_get_documented_answers_and_no_5xx(
    postgres_url: str, tmp_path: Path
) -> None:
    with running_server(tmp_path, {"LOOPML_DATABASE_URL": postgres_url}) as server:
        structured = _schemathesis(
            server.url,
            server.env,
            "--checks",
            "all",
            "--exclude-path-regex",
            FREE_TEXT_ROUTES,
        )
        free_text = _schemathesis(
            server.url,
            server.env,
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
            "--include-path-regex",
            FREE_TEXT_ROUTES,
        )
        server_log = (tmp_path / "server.log").read_text()
    for result in (structured, free_text):
        summary = result.stdout[-6000:]
        print(summary)
        assert result.returncode == 0, summary
    assert "Tested: 47" in free_text.stdout, free_text.stdout[-2000:]
    assert "Traceback" not in server_log, server_log[-4000:]
