"""Schemathesis against the live API on PostgreSQL (RELIABILITY 30): generated requests,
valid and invalid, must never get a 5xx, and every answer must match the OpenAPI document.

The server runs with authentication on, as it would beyond loopback: the first admin is made
with ``loopml users create-admin --password-stdin``, and every generated request carries a
token from that admin's login, so the requests reach the handlers rather than stopping at 401
(checked from the recorded answers)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from .conftest import RunningServer, running_server

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


# Routes whose body is free text that no JSON schema can describe (SQL, uploaded files): a
# schema-valid request may still be invalid SQL or an unreadable file, and 422 is the right
# answer there, so "positive data must be accepted" is the one check they are spared. Posted
# records are such a body too: schema-valid objects may not fit the table the first post made;
# and so are contracts, whose regexes must compile in RE2, which no JSON schema can say.
# A pipeline spec is YAML text in a JSON string: any string is schema-valid, few are specs.
# So is a cron expression or a time zone, and a schedule's or trigger's inputs must fit its
# pipeline; a webhook call needs the secret shown once, which no generator can know. So do a
# login and a browser session's (a user's password), the token routes (a project that exists,
# a resource in the form `kind:name`), and users and members (a password that passes the
# policy, a user that exists). A new table's columns must have distinct names, which no JSON
# schema can say. A feature view's spec is YAML text naming a source's columns, and a training
# set's entities a table or SQL.
FREE_TEXT_ROUTES = (
    r"/sql$|/tables/\{table\}/(files|records|contract)$|/transforms/\{name\}(/apply)?$"
    r"|/datasets$|/pipelines$|/schedules(/\{name\})?$|/triggers(/\{name\})?$|/fire$"
    r"|/auth/(login|whoami|session)$|/tokens(/\{token\}|/\{prefix\})?$|/users(/\{user\})?$|/members(/\{user\})?$"
    r"|/projects/\{project\}/tables$|/streams(/\{name\}|/apply)?$|/alerts(/\{rule\})?$"
    r"|/features/(views|training-sets)$"
    # A codeset's archive upload (a raw body no schema describes), its free-text `source`,
    # the webhook's server folder (refused unless under codesets.repository_roots) and the
    # push webhook (its secret first, as a trigger's /fire).
    r"|/codesets/\{name\}/(versions|webhook)$|/codesets/\{codeset_id\}/push$"
    # Its cursor is an opaque keyset token (`k` + base64 JSON) that no schema can describe
    # beyond its alphabet: a well-formed but forged one is a 422, which the positive-data
    # check counts as a valid request refused.
    r"|/projects/\{project\}/runs/search$"
    # The monitor's paths take names whose patterns the document does not declare yet.
    r"|/deployments/\{name\}/(monitor|windows)$|/versions/\{version\}/reference$"
)


ADMIN = "fuzz-admin"
ADMIN_PASSWORD = "a long fuzzing passphrase 7"
# Authentication on. The limiter counts failed logins and token checks per address, and every
# generated request comes from 127.0.0.1: the fuzz's own wrong logins must not lock it out.
AUTH_ENV = {"LOOPML_AUTH_ENABLED": "true", "LOOPML_AUTH_LOGIN_FAILURES_PER_MINUTE": "10000"}
LOGIN = "/api/v1/auth/login"
SESSION = "/api/v1/auth/session"  # a browser's login: wrong passwords answer 401 too
# Schemathesis reuses values it saw in answers, and whoami and the token list name the fuzz's
# own token (its id and prefix): revoking it, by either route, would turn every later request
# into a 401. Revocation is tested in tests/unit/api/test_auth.py.
REVOKE = "^revoke_(any_)?token_api_v1_"


def _admin_token(server: RunningServer) -> str:
    """The first admin, made as an operator makes it, and a token from its login; checks on
    the way that the server refuses a request without one."""
    made = server.cli(
        "users", "create-admin", ADMIN, "--password-stdin", input=f"{ADMIN_PASSWORD}\n"
    )
    assert made.returncode == 0, made.stdout + made.stderr
    with httpx.Client(base_url=server.url, timeout=30) as http:
        # The document is built on its first request, which takes more than schemathesis'
        # 10 s on a busy machine; built once here, it is served from memory after.
        assert http.get("/api/v1/openapi.json", timeout=180).status_code == 200
        assert http.get("/api/v1/projects").status_code == 401
        login = http.post(LOGIN, json={"user": ADMIN, "password": ADMIN_PASSWORD})
        assert login.status_code == 201, login.text
        token = str(login.json()["token"])
        bearer = {"authorization": f"Bearer {token}"}
        assert http.get("/api/v1/projects", headers=bearer).status_code == 200
        me = http.get("/api/v1/auth/whoami", headers=bearer).json()
        assert (me["user"], me["platform_admin"]) == (ADMIN, True)
    return token


def _answers(har: Path) -> Counter[tuple[int, str]]:
    """How many answers of each (status, path) a run's HAR record holds."""
    entries = json.loads(har.read_text())["log"]["entries"]
    return Counter(
        (int(e["response"]["status"]), urlsplit(e["request"]["url"]).path) for e in entries
    )


def _schemathesis(
    url: str, env: dict[str, str], token: str, har: Path, *selection: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(Path(sys.executable).with_name("schemathesis")),
            "run",
            f"{url}/api/v1/openapi.json",
            *selection,
            "--header",
            f"Authorization: Bearer {token}",
            "--report",
            "har",
            "--report-har-path",
            str(har),
            # Stateful testing follows links the document does not declare yet: it guesses
            # that a project's `id` fills a `{project}` name parameter, which it does not.
            "--phases",
            "examples,coverage,fuzzing",
            # 10 generated cases per operation on top of the examples and the coverage phase:
            # 15 took the CI's loaded machine 4.5 minutes, for no failure 10 would miss.
            "--max-examples",
            "10",
            "--seed",
            "20261121",
            "--workers",
            "1",
            # A hang guard, not a check: a request slower than this is reported as a
            # failure, and a slow answer on a loaded machine is not a contract failure: the
            # old 10 s bound was within reach of the load of 29 Nov below.
            "--request-timeout",
            "120",
            # Text may not hold NUL (U+0000): the store refuses it on every dialect (tested
            # in tests/unit/store/test_db.py), which a JSON schema cannot express.
            "--generation-allow-x00",
            "false",
        ],
        env=env,
        capture_output=True,
        text=True,
        # No bound of its own: the work is fixed (a seed, 10 examples an operation), and the
        # test's timeout below is the hang guard (subprocess.run kills schemathesis when it
        # fires). A 600 s bound here stopped the first run, 29 Nov, with both cores loaded by
        # stress-ng and a whole test run beside it: it measured the load, not the API.
    )


# Two schemathesis runs over every route take minutes on a busy two-core machine, and over
# ten minutes each with both cores loaded: a hang guard, not a check.
@pytest.mark.timeout(3600)
def test_generated_requests_get_documented_answers_and_no_5xx(
    postgres_url: str, tmp_path: Path
) -> None:
    env = {"LOOPML_DATABASE_URL": postgres_url, **AUTH_ENV}
    with running_server(tmp_path, env) as server:
        token = _admin_token(server)
        structured = _schemathesis(
            server.url,
            server.env,
            token,
            tmp_path / "structured.har",
            "--checks",
            "all",
            "--exclude-path-regex",
            FREE_TEXT_ROUTES,
        )
        free_text = _schemathesis(
            server.url,
            server.env,
            token,
            tmp_path / "free_text.har",
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
            "--include-path-regex",
            FREE_TEXT_ROUTES,
            "--exclude-operation-id-regex",
            REVOKE,
        )
        server_log = (tmp_path / "server.log").read_text()
    for result in (structured, free_text):
        summary = result.stdout[-6000:]
        print(summary)
        assert result.returncode == 0, summary
    # 64 operations (streams/apply's YAML among them) less both REVOKEs
    assert "Tested: 62" in free_text.stdout, free_text.stdout[-2000:]
    assert "Traceback" not in server_log, server_log[-4000:]
    answers = _answers(tmp_path / "structured.har") + _answers(tmp_path / "free_text.har")
    by_status = Counter[int]()
    for (status, _), count in answers.items():
        by_status[status] += count
    print(
        f"authenticated fuzz: {by_status.total()} answers, "
        f"{by_status.total() - by_status[401]} not 401: {sorted(by_status.items())}"
    )
    # The token reached the handlers: only a wrong login is ever refused as unauthenticated,
    # no address was locked out, and hundreds of answers are the handlers' successes.
    assert {path for status, path in answers if status == 401} <= {LOGIN, SESSION}
    assert by_status[429] == 0
    assert sum(n for status, n in by_status.items() if 200 <= status < 300) >= 400
