"""Typed messages between agents. A message carries a table, never a single bid."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import pandas as pd
import pyarrow as pa


class Kind(StrEnum):
    """What a message is, in the paper's vocabulary."""

    BIDS = "bids"  # DER bid book (aggregator -> TSO or DSO)
    OPERATIONAL_DATA = "operational_data"  # DSO network state (DSO -> TSO, tso_managed)
    BIDS_INFORMED = "bids_informed"  # the bids a DSO must validate (TSO -> DSO, hybrid)
    VALIDATION = "validation"  # a validation result (validator's own record, or to others)
    VALIDATED_BIDS = "validated_bids"  # validated bids (DSO -> TSO, hybrid; with
    # pre-validation DSO -> aggregator, then aggregator -> TSO)
    DSO_REQUEST = "dso_request"  # what a DSO buys for its own needs (DSO -> TSO, pre-validation)
    AGGREGATED_OFFER = "aggregated_offer"  # price-quantity curve at the interface (DSO -> TSO)
    FLEXIBILITY_AREA = "flexibility_area"  # P-Q area reachable at the interface (DSO -> TSO)
    DISPATCH = "dispatch"  # individual dispatch of DER (to aggregators)
    AGGREGATED_DISPATCH = "aggregated_dispatch"  # dispatch of an aggregated offer (TSO -> DSO)
    INTERFACE_TARGET = "interface_target"  # TSO requirement at a TSO-DSO interface
    NETWORK_STATUS = "network_status"  # network state table (asset-owning DSO -> its iDSO)


@dataclass(frozen=True)
class Message:
    """One message of one step of one period.

    ``payload`` is a DataFrame (a bid book, a dispatch list, a network state). ``step`` is the
    paper's label (Figs. 1-3) of the step that sends it.
    """

    period: int
    step: str
    sender: str
    receiver: str
    kind: Kind
    payload: pd.DataFrame

    @property
    def items(self) -> int:
        return len(self.payload)

    @property
    def size_bytes(self) -> int:
        """Bytes on the wire: the payload serialised as an Arrow IPC stream."""
        return payload_bytes(self.payload)


def payload_bytes(table: pd.DataFrame) -> int:
    """Size of a table serialised as an Arrow IPC stream (schema, dictionaries, record batch,
    end marker).

    Counted without writing the stream (about ten messages a period): the record batch's size
    from its Arrow columns (converted as ``RecordBatch.from_pandas`` converts them), plus the
    rest of the stream, whose size depends only on the columns' names and types and on the
    dictionaries of dictionary (categorical) columns, and is measured once per such key: a
    network state's categorical column has the same categories every period. Tables the
    shortcut does not cover (frame attributes, which go into the schema; a table without
    columns, whose batch length Arrow takes from the frame) are serialised.
    """
    if table.attrs or not table.columns.is_unique or table.columns.empty:
        return stream_bytes(table)
    names, arrays, columns = [], [], []
    for name, column in table.items():
        array = pa.array(column.values, from_pandas=True)
        names.append(str(name))
        arrays.append(array)
        columns.append((name, str(column.dtype), array.type, _dictionary(array)))
    batch_bytes = pa.ipc.get_record_batch_size(pa.RecordBatch.from_arrays(arrays, names=names))
    key = tuple(columns)
    if key not in _SCHEMA_BYTES:
        _SCHEMA_BYTES[key] = stream_bytes(table) - batch_bytes
    return _SCHEMA_BYTES[key] + batch_bytes


def _dictionary(array: pa.Array) -> tuple | None:
    """The values of a dictionary column's dictionary (written to the stream as a message of
    its own, before the record batch, which holds only the indices); None for other columns."""
    if not pa.types.is_dictionary(array.type):
        return None
    return tuple(array.dictionary.to_pylist())


#: bytes of the stream besides the record batch (schema message, dictionary batches, end
#: marker), per (name, dtype, Arrow type, dictionary values) of its columns: what the schema
#: with its pandas metadata and the dictionaries are made of
_SCHEMA_BYTES: dict[tuple, int] = {}


def stream_bytes(table: pd.DataFrame) -> int:
    """Size of a table serialised as an Arrow IPC stream, by writing the stream."""
    batch = pa.RecordBatch.from_pandas(table, preserve_index=False)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue().size
