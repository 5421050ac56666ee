"""Query results as a Delta table can store them.

DuckDB answers in Arrow types that Delta Lake has no equivalent for. The writer fails on
them deep inside (a bare exception for a time of day or an interval, a misleading storage
error for an unsigned value over the signed range), so they are handled before the write:
unsigned integers are widened to the signed type that holds them, and the rest are refused
with a hint to ``CAST`` them in the SQL.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from loopml.core.errors import ValidationError

# Delta has no unsigned integers; each is widened to the signed type that holds all of it
# (a UBIGINT over 2**63 - 1 is refused with a hint instead).
_SIGNED = {
    pa.uint8(): pa.int16(),
    pa.uint16(): pa.int32(),
    pa.uint32(): pa.int64(),
    pa.uint64(): pa.int64(),
}


def _unstorable(kind: pa.DataType) -> bool:
    if (
        pa.types.is_time(kind)
        or pa.types.is_duration(kind)
        or pa.types.is_interval(kind)
        or pa.types.is_union(kind)
        or pa.types.is_null(kind)
    ):
        return True
    if pa.types.is_struct(kind):
        return any(_unstorable(kind.field(i).type) for i in range(kind.num_fields))
    if pa.types.is_map(kind):
        return _unstorable(kind.key_type) or _unstorable(kind.item_type)
    if isinstance(kind, pa.ListType | pa.LargeListType | pa.FixedSizeListType):
        return _unstorable(kind.value_type)
    if pa.types.is_dictionary(kind):
        return _unstorable(kind.value_type)
    return False


def storable(table: pa.Table) -> pa.Table:
    """The result as the lake can store it: unsigned integers widened to signed ones; a
    column of a type Delta has no equivalent for (times of day, intervals, unions) refused
    with a hint, rather than failing inside the writer."""
    bad = {f.name: str(f.type) for f in table.schema if _unstorable(f.type)}
    if bad:
        shown = ", ".join(f"{n!r} ({t})" for n, t in bad.items())
        raise ValidationError(
            f"the result has columns a lake table cannot store: {shown}. CAST them in the SQL, "
            "for example CAST(col AS VARCHAR), or epoch(col) for an interval in seconds",
            details={"field": "sql", "columns": bad},
        )
    for index, field in enumerate(table.schema):
        signed = _SIGNED.get(field.type)
        if signed is None:
            continue
        try:
            column = pc.cast(table.column(index), signed)
        except pa.ArrowInvalid as exc:
            raise ValidationError(
                f"column {field.name!r} holds unsigned values over the largest signed 64-bit "
                f"integer, which a lake table cannot store: CAST it to DECIMAL(20, 0) ({exc})",
                details={"field": "sql", "column": field.name},
            ) from exc
        table = table.set_column(index, pa.field(field.name, signed, field.nullable), column)
    return table
