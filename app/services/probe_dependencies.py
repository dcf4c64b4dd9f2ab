"""Which probes a probe depends on: its parents, within one tenant, never in a cycle.

While a parent is down, a child's alerts open suppressed (``services.suppression``); this
module keeps the configuration right and gives the evaluator its reads. A change takes a
per-tenant lock before it reads the tenant's edges (an advisory lock on PostgreSQL; on
SQLite the write that starts the change holds the database's write lock), so two changes
that would close a cycle together cannot both pass the check. The search reads every edge
of the tenant in one query and walks them in memory: a tenant with thousands of probes
costs one small query, not one per hop.
"""

from __future__ import annotations

from collections import deque
from typing import Annotated, Collection, Sequence

from pydantic import Field
from sqlalchemy import Integer, Select, cast, delete, func, insert, literal, select

from app.extensions import db
from app.models import Probe, ProbeDependency
from app.models.base import MAX_ID
from app.services.bulk import KeyList, dialect_name, per_dialect
from app.services.errors import InvalidInputError, NotFoundError
from app.services.tenant_rows import owned

MAX_PARENTS = 20
FIELD = "depends_on"
# The first key of the PostgreSQL advisory lock that serializes dependency changes, per tenant (the second key).
_LOCK_SPACE = 0x70646570  # "pdep"

ParentId = Annotated[int, Field(ge=1, le=MAX_ID)]

_TABLE = ProbeDependency.__table__
_CHILD_KEYS = KeyList("child_ids", _TABLE.c.probe_id)
_PARENT_KEYS = KeyList("parent_ids", _TABLE.c.parent_id)
_CHUNK = 10_000
_NAMED = 10  # probes a cycle's message names at most


# --- reads -----------------------------------------------------------------------------------

@per_dialect
def _parents_statement(dialect: str) -> Select[tuple[int, int]]:
    return (select(_TABLE.c.probe_id, _TABLE.c.parent_id).where(_CHILD_KEYS.condition(dialect))
            .order_by(_TABLE.c.probe_id, _TABLE.c.parent_id))


@per_dialect
def _children_statement(dialect: str) -> Select[tuple[int, int]]:
    return (select(_TABLE.c.parent_id, _TABLE.c.probe_id).where(_PARENT_KEYS.condition(dialect))
            .order_by(_TABLE.c.parent_id, _TABLE.c.probe_id))


def _related(statement: Select[tuple[int, int]], keys: KeyList, probe_ids: Collection[int]) -> dict[int, list[int]]:
    """{id: [related ids]} for every id asked for: one query per ``_CHUNK`` ids (SQLite limits
    the parameters of one statement)."""
    ids = list(dict.fromkeys(probe_ids))
    related: dict[int, list[int]] = {probe_id: [] for probe_id in ids}
    for start in range(0, len(ids), _CHUNK):
        for probe_id, other in db.session.execute(statement, keys.bind(dialect_name(), ids[start:start + _CHUNK])):
            related[probe_id].append(other)
    return related


def parents_of(probe_ids: Collection[int]) -> dict[int, list[int]]:
    """Each probe's parents, in id order: every id asked for is a key (``[]`` for none)."""
    return _related(_parents_statement(), _CHILD_KEYS, probe_ids)


def children_of(probe_ids: Collection[int]) -> dict[int, list[int]]:
    """The probes that depend on each probe, in id order: every id asked for is a key (``[]`` for none)."""
    return _related(_children_statement(), _PARENT_KEYS, probe_ids)


# --- changes ---------------------------------------------------------------------------------

def check_parents(tenant_id: int, probe_id: int | None, parent_ids: Sequence[int]) -> list[int]:
    """``parent_ids`` as a list, checked for everything but cycles: at most ``MAX_PARENTS``, none
    twice, not the probe itself, each a probe of the tenant (``probe <id> not found`` otherwise).

    ``probe_id`` is None for a probe not created yet (it cannot be its own parent, nor in a cycle).
    """
    parents = list(parent_ids)
    if len(parents) > MAX_PARENTS:
        raise InvalidInputError(f"at most {MAX_PARENTS} parents", field=FIELD)
    if len(set(parents)) != len(parents):
        twice = next(parent for index, parent in enumerate(parents) if parent in parents[:index])
        raise InvalidInputError(f"lists probe {twice} twice", field=FIELD)
    if probe_id is not None and probe_id in parents:
        raise InvalidInputError("a probe cannot depend on itself", field=FIELD)
    for parent_id in parents:
        if not 1 <= parent_id <= MAX_ID:  # no such row; the database would refuse the number itself
            raise NotFoundError(f"probe {parent_id} not found")
        owned(Probe, tenant_id, parent_id, "probe")
    return parents


def replace_parents(tenant_id: int, probe_id: int, parent_ids: list[int]) -> None:
    """Make ``parent_ids`` (checked by ``check_parents``) the parents of ``probe_id``, in the
    session's transaction; the caller commits.

    A cycle is refused with an ``InvalidInputError`` that names it, after rolling the session
    back: the old parents are deleted by then, and nothing of the caller's change may be
    written without them.
    """
    _lock_tenant(tenant_id)
    db.session.execute(delete(ProbeDependency).where(ProbeDependency.probe_id == probe_id))
    if not parent_ids:
        return
    cycle = _cycle_through(_edges(tenant_id), probe_id, parent_ids)
    if cycle:
        db.session.rollback()
        raise InvalidInputError(f"would make a cycle: {_named_path(cycle)}", field=FIELD)
    db.session.execute(insert(ProbeDependency), [
        {"probe_id": probe_id, "parent_id": parent_id, "tenant_id": tenant_id} for parent_id in parent_ids])


def set_parents(tenant_id: int, probe_id: int, parent_ids: Sequence[int]) -> list[int]:
    """Replace the parents of the tenant's probe ``probe_id``; returns them in id order.

    Refused, with nothing written: another tenant's or a missing probe (``NotFoundError``), the
    probe itself, an id twice, more than ``MAX_PARENTS``, or a dependency that would close a
    cycle (``InvalidInputError`` on ``depends_on``, e.g. ``would make a cycle: db → app → db``).
    """
    owned(Probe, tenant_id, probe_id, "probe")
    parents = check_parents(tenant_id, probe_id, parent_ids)
    replace_parents(tenant_id, probe_id, parents)
    db.session.commit()
    return sorted(parents)


def _lock_tenant(tenant_id: int) -> None:
    """Serialize dependency changes of one tenant until the transaction ends.

    On SQLite the delete that follows takes the database's write lock first, which does the same.
    """
    if dialect_name() == "postgresql":
        keys = (cast(literal(_LOCK_SPACE), Integer), cast(literal(tenant_id), Integer))  # the (int, int) form
        db.session.execute(select(func.pg_advisory_xact_lock(*keys)))


def _edges(tenant_id: int) -> dict[int, list[int]]:
    """The tenant's dependencies as {probe: [parents]}, read in one query."""
    edges: dict[int, list[int]] = {}
    rows = db.session.execute(select(ProbeDependency.probe_id, ProbeDependency.parent_id)
                              .where(ProbeDependency.tenant_id == tenant_id)
                              .order_by(ProbeDependency.probe_id, ProbeDependency.parent_id))
    for child, parent in rows:
        edges.setdefault(child, []).append(parent)
    return edges


def _cycle_through(edges: dict[int, list[int]], probe_id: int, parent_ids: list[int]) -> list[int]:
    """The shortest cycle that ``probe_id`` depending on ``parent_ids`` would close, as the
    probes along it (``probe_id`` first and last), or ``[]`` when there is none.

    A breadth-first walk up the parents from the new parents at once: a cycle is a path from
    one of them back to ``probe_id``. Each probe is visited once.
    """
    came_from: dict[int, int] = {parent: probe_id for parent in parent_ids}
    queue = deque(sorted(parent_ids))
    while queue:
        current = queue.popleft()
        if current == probe_id:
            return _path_back(came_from, probe_id)
        for parent in edges.get(current, ()):
            if parent not in came_from:
                came_from[parent] = current
                queue.append(parent)
    return []


def _path_back(came_from: dict[int, int], probe_id: int) -> list[int]:
    """The walk that reached ``probe_id`` again, from ``probe_id`` along its new parent."""
    path = [probe_id]
    step = came_from[probe_id]
    while step != probe_id:
        path.append(step)
        step = came_from[step]
    path.append(probe_id)
    return list(reversed(path))


def _named_path(path: list[int]) -> str:
    """``db → app → db``; a cycle longer than ``_NAMED`` probes shows its ends and how many lie between."""
    half = _NAMED // 2
    shown = path if len(path) <= _NAMED else [*path[:half], None, *path[-half:]]
    ids = {probe_id for probe_id in shown if probe_id is not None}
    names = dict(db.session.execute(select(Probe.id, Probe.name).where(Probe.id.in_(ids))).tuples().all())
    between = f"… {len(path) - 2 * half} more …"
    return " → ".join(between if probe_id is None else names.get(probe_id, str(probe_id)) for probe_id in shown)
