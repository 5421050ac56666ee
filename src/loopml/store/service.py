"""What a capability's service is made of: it holds the metadata store and opens one
transaction per call, so that routes, pages and commands never hold a session.

A store function that takes the session first becomes a method in one line::

    class MlflowRecords(StoreService):
        rename_run = in_session(runs.rename)

``records.rename_run(project, run_id, name, actor=...)`` then opens a transaction, calls
``runs.rename(session, project, run_id, name, actor=...)`` in it and commits: no
hand-written function whose whole body is that, and the signature (and the docstring) is the
store function's own, checked by mypy at each call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, TypeVar, overload

from loopml.store.db import MetadataStore

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

P = ParamSpec("P")
T = TypeVar("T")


class StoreService:
    """A capability's service over the metadata store, built once by the platform."""

    def __init__(self, store: MetadataStore) -> None:
        self.store = store


class in_session(Generic[P, T]):
    """A store function ``fn(session, ...)`` as a method of a ``StoreService`` that runs it
    in a transaction of its own."""

    def __init__(self, fn: Callable[Concatenate[Session, P], T]) -> None:
        self.fn = fn
        self.__doc__ = fn.__doc__

    @overload
    def __get__(self, owner: None, kind: type[Any]) -> in_session[P, T]: ...

    @overload
    def __get__(self, owner: StoreService, kind: type[Any] | None = None) -> Callable[P, T]: ...

    def __get__(
        self, owner: StoreService | None, kind: type[Any] | None = None
    ) -> in_session[P, T] | Callable[P, T]:
        if owner is None:
            return self
        fn, store = self.fn, owner.store

        def call(*args: P.args, **kwargs: P.kwargs) -> T:
            with store.session() as session:
                return fn(session, *args, **kwargs)

        call.__doc__ = fn.__doc__
        call.__name__ = fn.__name__
        return call
