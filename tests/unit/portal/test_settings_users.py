"""The settings page's user and member buttons: disabling a user ends its browser session at
once and refuses its next login; removing a member hides the project from it."""

from __future__ import annotations

from fastapi.testclient import TestClient

from loopml.auth import service as auth

from .conftest import ADMIN, ORIGIN, VIEWER, csrf_of, log_in

HEADERS = {"Origin": ORIGIN}


def _post(http: TestClient, url: str, token: str) -> int:
    return http.post(url, data={"csrf_token": token}, headers=HEADERS).status_code


def test_an_admin_disables_and_enables_a_user_from_the_settings_page(secured: TestClient) -> None:
    store = secured.app.state.running.context.store  # type: ignore[attr-defined]
    log_in(secured, VIEWER)
    viewer_cookie = secured.cookies.get("loopml_session")
    assert secured.get("/models").status_code == 200
    secured.cookies.clear()

    log_in(secured, ADMIN)
    page = secured.get("/settings")
    assert 'action="/portal/settings/users/vera/disable"' in page.text
    assert 'action="/portal/settings/users/root/disable"' not in page.text  # not yourself
    token = csrf_of(page.text)
    assert _post(secured, "/portal/settings/users/vera/disable", token) == 200
    assert {u.name: u.disabled for u in auth.list_users(store)}["vera"] is True
    shown = secured.get("/settings").text
    assert 'action="/portal/settings/users/vera/enable"' in shown
    assert "<td>vera</td><td>no</td><td>disabled</td>" in shown
    itself = secured.post(
        "/portal/settings/users/root/disable", data={"csrf_token": token}, headers=HEADERS
    )
    assert itself.status_code == 409
    assert "cannot disable yourself" in itself.text
    without_csrf = secured.post("/portal/settings/users/vera/enable", headers=HEADERS)
    assert without_csrf.status_code == 403

    # The viewer's open browser session is revoked on the server, and its login refused.
    secured.cookies.clear()
    secured.cookies.set("loopml_session", viewer_cookie or "")
    after = secured.get("/models", follow_redirects=False)
    assert after.status_code in (303, 401)
    secured.cookies.clear()
    login_token = csrf_of(secured.get("/login").text)
    refused = secured.post(
        "/portal/login",
        data={"user": VIEWER[0], "password": VIEWER[1], "csrf_token": login_token, "next": "/"},
        headers=HEADERS,
        follow_redirects=False,
    )
    assert refused.status_code == 401
    assert "is disabled" in refused.text

    log_in(secured, ADMIN)
    token = csrf_of(secured.get("/settings").text)
    assert _post(secured, "/portal/settings/users/vera/enable", token) == 200
    secured.cookies.clear()
    log_in(secured, VIEWER)


def test_a_project_admin_removes_a_member_from_the_settings_page(secured: TestClient) -> None:
    log_in(secured, ADMIN)
    page = secured.get("/settings")
    remove = f"/portal/settings/members/default/{VIEWER[0]}/remove"
    assert f'action="{remove}"' in page.text
    token = csrf_of(page.text)
    answer = secured.post(remove, data={"csrf_token": token}, headers=HEADERS)
    assert answer.status_code == 200
    assert (
        f"<td>{VIEWER[0]}</td>"
        not in answer.text.split("Members of default")[1].split("</table>")[0]
    )
    again = secured.post(remove, data={"csrf_token": token}, headers=HEADERS)
    assert again.status_code == 404
    assert "no member" in again.text
    secured.cookies.clear()
    log_in(secured, VIEWER)
    assert secured.get("/data/default/sql").status_code == 404  # the project is hidden now
