"""Listing deployments reads every deployment's shown revisions (its newest ones and those in
use) in one query; each listed deployment holds exactly the revisions ``get`` shows, also for
one with more revisions than are shown and traffic on an old one."""

from __future__ import annotations

from loopml.core.deployments import DeploymentSpec
from loopml.store import MetadataStore, deployments
from loopml.store.deployments import RECENT_REVISIONS, NewRevision, Roles


def _revision(number: int) -> NewRevision:
    return NewRevision(
        number=number, model="churn", version=number, ref=f"churn/{number}", role="primary"
    )


def test_listed_deployments_show_the_same_revisions_as_get(store: MetadataStore) -> None:
    spec = DeploymentSpec(model="churn/1", min_replicas=0)
    with store.session() as session:
        for name in ("a-one", "b-many", "c-canary"):
            deployments.create(
                session, "default", name, spec=spec, revisions=[_revision(1)],
                roles=Roles(primary=1), traffic={1: 100}, actor="test",
            )  # fmt: skip
        # b-many: more revisions than are shown, with traffic still on revision 1 and 2.
        extra = [_revision(n) for n in range(2, RECENT_REVISIONS + 6)]
        deployments.update(
            session, "default", "b-many", spec=spec, revisions=extra,
            roles=Roles(primary=1, canary=2), traffic={1: 80, 2: 20}, actor="test",
        )  # fmt: skip
        deployments.update(
            session, "default", "c-canary", spec=spec, revisions=[_revision(2)],
            roles=Roles(primary=2, shadow=1), traffic={2: 100}, actor="test",
        )  # fmt: skip
    with store.session() as session:
        listed = {d.name: d for d in deployments.list_(session, "default").items}
        every = {d.name: d for d in deployments.list_all(session)}
        for name in ("a-one", "b-many", "c-canary"):
            one = deployments.get(session, "default", name)
            assert listed[name].revisions == one.revisions, name
            assert every[name].revisions == one.revisions, name
    numbers = [r.number for r in listed["b-many"].revisions]
    newest = list(range(RECENT_REVISIONS + 5 - RECENT_REVISIONS + 1, RECENT_REVISIONS + 6))
    assert numbers == [1, 2, *[n for n in newest if n > 2]]
    assert [r.number for r in listed["c-canary"].revisions] == [1, 2]


def test_list_in_reads_the_first_of_each_project_in_one_go(store: MetadataStore) -> None:
    """``list_in``: the first ``limit_each`` deployments by name of each project asked for
    (no other project's), by project then name; without ``revisions`` none are read."""
    from loopml.store import projects

    spec = DeploymentSpec(model="churn/1", min_replicas=0)
    with store.session() as session:
        projects.create(session, "other", actor="test")
        projects.create(session, "hidden", actor="test")
        for project, name in [
            ("default", "c"), ("default", "a"), ("default", "b"),
            ("other", "z"), ("hidden", "h"),
        ]:  # fmt: skip
            deployments.create(
                session, project, name, spec=spec, revisions=[_revision(1)],
                roles=Roles(primary=1), traffic={1: 100}, actor="test",
            )  # fmt: skip
    with store.session() as session:
        found = deployments.list_in(session, ["other", "default"], limit_each=2)
        assert [(d.project, d.name) for d in found] == [
            ("default", "a"), ("default", "b"), ("other", "z")
        ]  # fmt: skip
        assert found[0].revisions == deployments.get(session, "default", "a").revisions
        bare = deployments.list_in(session, ["default"], limit_each=5, revisions=False)
        assert [d.name for d in bare] == ["a", "b", "c"]
        assert all(d.revisions == [] for d in bare)
        assert bare[0].traffic == {1: 100}
        assert deployments.list_in(session, [], limit_each=5) == []
