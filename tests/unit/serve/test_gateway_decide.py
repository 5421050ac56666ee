"""The gateway's forward decision (``_decide``), the one both gateways ask: pure, so called
here directly, with no server, replica or clock."""

from __future__ import annotations

from loopml.serve.gateway import _decide as decide
from loopml.serve.gateway._balance import Balancer
from loopml.serve.gateway.routing import Backend, RevisionRoute, Routes


def _revision(number: int, weight: int, *urls: str, role: str = "primary") -> RevisionRoute:
    backends = tuple(Backend(url, number, "cancer", number) for url in urls)
    return RevisionRoute(number, "cancer", number, weight, backends, role)


def test_the_replica_gets_only_its_headers_and_the_clients_safe_id() -> None:
    raw = [
        (b"content-type", b"application/json"),
        (b"authorization", b"Bearer secret"),
        (b"x-request-id", b"order-17"),
        (b"cookie", b"a=b"),
    ]
    headers, inference_id = decide.replica_headers(raw, lambda: "new")
    assert inference_id == "order-17"
    assert headers == {"content-type": "application/json", "x-request-id": "order-17"}


def test_an_unsafe_or_missing_request_id_gets_a_new_one() -> None:
    for raw in ([(b"x-request-id", b"bad id\n")], []):
        headers, inference_id = decide.replica_headers(raw, lambda: "new")
        assert (inference_id, headers) == ("new", {"x-request-id": "new"})


def test_a_failed_try_is_retried_once_on_another_replica() -> None:
    revision = _revision(1, 100, "http://a", "http://b")
    routes = Routes("default", "churn", (revision,))
    balancer = Balancer()
    attempt = decide.first(balancer, routes, None)
    assert attempt is not None
    assert not attempt.retry
    assert decide.retries(attempt)
    retry = decide.again(balancer, routes, None, attempt)
    assert retry is not None
    assert retry.retry
    assert retry.backend is not attempt.backend
    assert not decide.retries(retry)


def test_no_retry_when_no_other_replica_is_ready() -> None:
    routes = Routes("default", "churn", (_revision(1, 100, "http://a"),))
    balancer = Balancer()
    attempt = decide.first(balancer, routes, None)
    assert attempt is not None
    assert decide.again(balancer, routes, None, attempt) is None


def test_nothing_is_picked_without_a_ready_replica() -> None:
    assert decide.first(Balancer(), Routes("default", "churn", (_revision(1, 100),)), None) is None


def test_a_pin_picks_the_revision_serving_that_version() -> None:
    routes = Routes(
        "default",
        "churn",
        (_revision(1, 90, "http://a"), _revision(2, 10, "http://b", role="canary")),
    )
    for _ in range(20):
        attempt = decide.first(Balancer(), routes, 2)
        assert attempt is not None
        assert attempt.revision.number == 2


def test_a_successful_inference_is_logged_and_says_who_answered() -> None:
    revision = _revision(3, 100, "http://a")
    settled = decide.settle(revision, 200, None, True)
    assert settled.logged
    assert settled.code is None
    assert settled.headers == {
        "x-loopml-revision": "3",
        "x-loopml-model": "cancer",
        "x-loopml-model-version": "3",
    }


def test_errors_and_metadata_calls_are_counted_not_logged() -> None:
    revision = _revision(1, 100, "http://a")
    assert decide.settle(revision, 422, "validation_error", True) == decide.Settled(
        "validation_error", False, decide.revision_headers(revision)
    )
    assert decide.settle(revision, 503, None, True).code == "http_503"
    assert not decide.settle(revision, 200, None, False).logged
