"""Typed messages between agents. A message carries a table, never a single bid."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import pandas as pd
import pyarrow as pa

from market_sim.columns import Columns, array_of, as_frame, length


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

    ``payload`` is a table (a bid book, a dispatch list, a network state): a DataFrame, or
    the columns of one (numpy or pandas arrays: :data:`~market_sim.columns.Columns`) where
    its receiver only reads columns back. ``step`` is the paper's label (Figs. 1-3) of the
    step that sends it.
    """

    period: int
    step: str
    sender: str
    receiver: str
    kind: Kind
    payload: Columns

    @property
    def items(self) -> int:
        return length(self.payload)

    @property
    def size_bytes(self) -> int:
        """Bytes on the wire: the payload serialised as an Arrow IPC stream."""
        return payload_bytes(self.payload)


def payload_bytes(table: Columns) -> int:
    """Size of a table (or the table of its columns, :func:`stream_bytes`) serialised as an
    Arrow IPC stream (schema, dictionaries, record batch, end marker).

    Counted without writing the stream or converting text (about ten messages a period, a
    few hundred rows of four text columns each; Arrow's conversion of text cost more than all
    the rest of a message): the record batch's body is its buffers, each padded to Arrow's
    8-byte alignment, and their lengths follow from each column's row count, its nulls and,
    for text, its UTF-8 bytes. The rest of the stream (schema message, dictionary batches,
    the batch's metadata, end marker) depends only on the columns' names and types, the
    dictionaries of dictionary (categorical) columns and whether the batch and its body are
    empty, and is measured once per such key. Tables the shortcut does not cover (frame
    attributes, which go into the schema; a table without columns, whose batch length Arrow
    takes from the frame; a column type whose buffers are not counted here) are serialised.

    The columns are read as the arrays the frame holds (:func:`~market_sim.columns.array_of`):
    a message's frame is new, and boxing each of its columns in a Series cost more than
    counting all of them.
    """
    if not _counted(table):
        return stream_bytes(table)
    columns, body = [], 0
    for name in table:
        values = array_of(table, name)
        if type(values) is np.ndarray and values.dtype.kind in _NUMBERS:
            key, size = _number_layout(values)  # most columns: no layout object
        elif not isinstance(values, np.ndarray | pd.api.extensions.ExtensionArray):
            return stream_bytes(table)  # a mapping's other values: as the table makes them
        else:
            layout = _column_layout(values)
            if layout is None:
                return stream_bytes(table)
            key, size = layout.key, sum(map(_padded, layout.buffers))
        columns.append((name, key))
        body += size
    key = (tuple(columns), length(table) == 0, body == 0)
    if key not in _REST_BYTES:
        _REST_BYTES[key] = stream_bytes(table) - body
    return _REST_BYTES[key] + body


def _counted(table: Columns) -> bool:
    """Whether :func:`payload_bytes` counts ``table``'s bytes (a mapping's names are unique,
    but it must have columns; a frame must have unique ones and no attributes)."""
    if not isinstance(table, pd.DataFrame):
        return len(table) > 0
    return not table.attrs and table.columns.is_unique and not table.columns.empty


#: Arrow IPC pads every buffer of a record batch's body to a multiple of this many bytes
_ALIGNMENT = 8

#: bytes of the stream besides the record batch's body (schema message, dictionary batches,
#: the batch's metadata, end marker), per (name, column key) of its columns, empty batch, empty
#: body: what the schema with its pandas metadata, the dictionaries and the batch's
#: metadata (one node per column, one entry per buffer; a zero length is left out) are made of
_REST_BYTES: dict[tuple, int] = {}


@dataclass(frozen=True)
class _Layout:
    """A column as Arrow writes it: ``key``, what its part of the schema and dictionaries
    depends on (dtype, Arrow type, dictionary values); ``buffers``, the unpadded byte lengths
    of its buffers in the record batch's body."""

    key: tuple
    buffers: tuple[int, ...]


def _column_layout(values: np.ndarray | pd.api.extensions.ExtensionArray) -> _Layout | None:
    """The layout of one column's values (a numpy or pandas array), converted as
    ``RecordBatch.from_pandas`` converts it; None for a type whose buffers are not counted
    here."""
    dtype = values.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in _NUMBERS:
        key, size = _number_layout(np.asarray(values))
        return _Layout(key, (size,))
    if isinstance(dtype, pd.CategoricalDtype):
        return _categorical_layout(values)
    if _python_objects(dtype):
        text = _text_layout(dtype, np.asarray(values))
        if text is not None:
            return text
    array = pa.array(values, from_pandas=True)
    buffers = _buffers(array)
    return None if buffers is None else _Layout((dtype, array.type), buffers)


#: numpy kinds whose Arrow type follows from the dtype alone: booleans (bits), signed and
#: unsigned integers, floats (NaN is null: ``from_pandas``)
_NUMBERS = "biuf"


def _number_layout(values: np.ndarray) -> tuple[tuple, int]:
    """A numpy column of numbers: its key (the dtype alone fixes its Arrow type) and the
    padded bytes of its values (booleans as bits) and, for floats with NaN, of a validity
    bitmap."""
    n, kind = len(values), values.dtype.kind
    size = _padded(_bitmap_bytes(n) if kind == "b" else values.nbytes)
    if kind == "f" and np.isnan(values).any():
        size += _padded(_bitmap_bytes(n))
    return (values.dtype,), size


def _python_objects(dtype: object) -> bool:
    """Whether a column's values are Python objects (text, as a rule): numpy's object dtype
    or pandas' text stored as Python strings."""
    if isinstance(dtype, pd.StringDtype):
        return dtype.storage == "python"
    return dtype == np.dtype(object)


def _categorical_layout(values: pd.Categorical) -> _Layout:
    """A categorical column: its codes are the indices (of the codes' integer type); the
    categories, a dictionary batch of their own, are in the key."""
    codes = values.codes
    dtype = values.dtype
    categories = (dtype.categories.dtype, dtype.ordered, tuple(dtype.categories))
    validity = _bitmap_bytes(len(codes)) if (codes < 0).any() else 0
    return _Layout(("category", codes.dtype, categories), (validity, codes.nbytes))


def _text_layout(dtype: object, values: np.ndarray) -> _Layout | None:
    """A text column without nulls (every value a ``str``): Arrow's text type (what both
    pandas and Arrow make of Python strings), offsets and UTF-8 bytes, counted by joining the
    values (one C loop, which rejects any value that is not a ``str``) as a list: the join
    made one of the array item by item, at a third of its cost; None for others (nulls,
    other objects, no rows: Arrow infers the type from the values). Keyed by the dtype's
    name: hashing pandas' text dtype costs more than the join."""
    if not len(values):
        return None
    try:
        data = len("".join(values.tolist()).encode())
    except (TypeError, UnicodeEncodeError):
        return None
    return _Layout(("text", str(dtype)), (0, (len(values) + 1) * _OFFSET_BYTES, data))


#: bytes of one offset of Arrow's (not large) text type
_OFFSET_BYTES = 4


def _buffers(array: pa.Array) -> tuple[int, ...] | None:
    """Unpadded lengths of an Arrow array's buffers as the IPC writer writes them (validity
    bitmap only with nulls; values truncated to the array's length); None for types other
    than fixed-width, text and null."""
    n, kind = len(array), array.type
    validity = _bitmap_bytes(n) if array.null_count else 0
    if pa.types.is_null(kind):
        return ()
    if pa.types.is_primitive(kind):
        return validity, -(-n * kind.bit_width // 8)
    if pa.types.is_string(kind):
        return validity, (n + 1) * _OFFSET_BYTES, _text_bytes(array)
    return None


def _text_bytes(array: pa.StringArray) -> int:
    """UTF-8 bytes of a text array's values: the span of its offsets."""
    if not len(array):
        return 0
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int32)
    return int(offsets[array.offset + len(array)] - offsets[array.offset])


def _padded(length: int) -> int:
    """``length`` bytes padded to Arrow's alignment."""
    return -(-length // _ALIGNMENT) * _ALIGNMENT


def _bitmap_bytes(n: int) -> int:
    """Bytes of a bitmap of ``n`` bits."""
    return -(-n // 8)


def stream_bytes(table: Columns) -> int:
    """Size of a table (a mapping: the DataFrame of its columns) serialised as an Arrow IPC
    stream, by writing the stream."""
    batch = pa.RecordBatch.from_pandas(as_frame(table), preserve_index=False)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue().size
