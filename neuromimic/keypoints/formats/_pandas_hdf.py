"""Read a pandas `HDFStore` DataFrame with MultiIndex columns using h5py only, never unpickling.

DeepLabCut saves its output with ``DataFrame.to_hdf(path, key="df_with_missing", ...)``:
a PyTables file in pandas' "fixed" layout (older DLC) or "table" layout (DLC 2.x). Both
layouts keep the numbers in plain HDF5 datasets:

- fixed (group attribute ``pandas_type == "frame"``): per block ``i``, the values in
  ``block{i}_values`` [N, C] and the column labels as one string array per level
  ``block{i}_items_level{j}`` plus integer codes ``block{i}_items_label{j}`` [C];
- table (``pandas_type == "frame_table"``): a compound dataset ``table`` whose fields
  ``values_block_{i}`` [N, C_i] hold the values; the column labels of block ``i`` are the
  ``values_block_{i}_kind`` attribute of ``table``, written by PyTables as a protocol-0
  pickle of a list of tuples of strings.

`pandas.read_hdf` would unpickle that attribute, which can run arbitrary code from a
file. Here it is decoded by `decode_pickled_strings`, a small interpreter for the few
pickle opcodes that build lists, tuples, strings and numbers; any other opcode (imports,
calls, object construction) is refused, so nothing in the file is ever executed.
"""

from __future__ import annotations

import pickletools
from typing import Any

import h5py
import numpy as np

from neuromimic.errors import InputError

# Opcodes that only push or assemble plain data.
_PUSH = {
    "UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8",
    "STRING", "BINSTRING", "SHORT_BINSTRING",
    "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "FLOAT", "BINFLOAT",
}  # fmt: skip
_PUT = {"PUT", "BINPUT", "LONG_BINPUT"}
_GET = {"GET", "BINGET", "LONG_BINGET"}


class UnsafePickleError(InputError):
    """A pickled attribute holds more than lists, tuples, strings and numbers."""


def decode_pickled_strings(payload: bytes) -> Any:
    """Decode a pickle that holds only lists, tuples, strings, numbers and None.

    Nothing is imported or called: the opcodes are walked with `pickletools.genops`
    and only data-building opcodes are interpreted.

    Args:
        payload: the pickle bytes.

    Returns:
        The decoded list / tuple / str / int / float / None.

    Raises:
        UnsafePickleError: the pickle uses any other opcode (GLOBAL, REDUCE, BUILD, ...).
    """
    stack: list[Any] = []
    marks: list[int] = []
    memo: dict[int, Any] = {}
    for op, arg, _ in pickletools.genops(payload):
        name = op.name
        if name in ("PROTO", "FRAME"):
            continue
        if name == "STOP":
            break
        if name in _PUSH:
            stack.append(arg.decode("latin-1") if isinstance(arg, bytes) else arg)
        elif name in ("NONE",):
            stack.append(None)
        elif name == "NEWTRUE":
            stack.append(True)
        elif name == "NEWFALSE":
            stack.append(False)
        elif name == "MARK":
            marks.append(len(stack))
        elif name in ("EMPTY_LIST",):
            stack.append([])
        elif name == "EMPTY_TUPLE":
            stack.append(())
        elif name == "LIST":
            i = marks.pop()
            items = stack[i:]
            del stack[i:]
            stack.append(list(items))
        elif name == "TUPLE":
            i = marks.pop()
            items = stack[i:]
            del stack[i:]
            stack.append(tuple(items))
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            n = int(name[-1])
            items = stack[-n:]
            del stack[-n:]
            stack.append(tuple(items))
        elif name == "APPEND":
            item = stack.pop()
            stack[-1].append(item)
        elif name == "APPENDS":
            i = marks.pop()
            items = stack[i:]
            del stack[i:]
            stack[-1].extend(items)
        elif name in _PUT:
            memo[arg] = stack[-1]
        elif name == "MEMOIZE":
            memo[len(memo)] = stack[-1]
        elif name in _GET:
            stack.append(memo[arg])
        else:
            raise UnsafePickleError(f"pickle opcode {name} is not plain data; refused")
    if len(stack) != 1:
        raise UnsafePickleError("malformed pickle")
    return stack[0]


def find_frame_group(f: h5py.File) -> h5py.Group | None:
    """The group of the first pandas DataFrame in ``f`` (``df_with_missing`` first), or None."""
    keys = sorted(f.keys(), key=lambda k: k != "df_with_missing")
    for key in keys:
        obj = f[key]
        if isinstance(obj, h5py.Group) and _attr_str(obj, "pandas_type") in (
            "frame",
            "frame_table",
        ):
            return obj
    return None


def _attr_str(obj: h5py.HLObject, key: str) -> str | None:
    val = obj.attrs.get(key)
    if val is None:
        return None
    if isinstance(val, bytes | np.bytes_):
        return bytes(val).decode("utf-8", "replace")
    return str(val)


def _strings(arr: np.ndarray) -> list[str]:
    return [a.decode("utf-8") if isinstance(a, bytes | np.bytes_) else str(a) for a in arr]


def read_frame(group: h5py.Group) -> tuple[np.ndarray, list[tuple[str, ...]]]:
    """Values and column labels of a DataFrame stored by pandas in ``group``.

    Args:
        group: the DataFrame's group (see `find_frame_group`).

    Returns:
        ``(values [N, C] float64, columns)`` where ``columns[c]`` is the tuple of
        MultiIndex labels of column ``c`` (for example ``("scorer", "snout", "x")``).

    Raises:
        ValueError: the layout is not one of the two described in the module docstring.
        UnsafePickleError: a label attribute holds more than plain data.
    """
    kind = _attr_str(group, "pandas_type")
    blocks, columns = [], []
    if kind == "frame":
        nblocks = int(group.attrs.get("nblocks", 0))
        for i in range(nblocks):
            values = np.asarray(group[f"block{i}_values"][()])
            nlevels = int(group.attrs.get(f"block{i}_items_nlevels", 1))
            if f"block{i}_items_level0" in group:
                levels = [_strings(group[f"block{i}_items_level{j}"][()]) for j in range(nlevels)]
                codes = [np.asarray(group[f"block{i}_items_label{j}"][()]) for j in range(nlevels)]
                cols = [tuple(levels[j][codes[j][c]] for j in range(nlevels)) for c in range(len(codes[0]))]
            else:
                cols = [(s,) for s in _strings(group[f"block{i}_items"][()])]
            if values.shape[1] != len(cols) and values.shape[0] == len(cols):
                values = values.T
            blocks.append(values)
            columns += cols
    elif kind == "frame_table":
        table = group["table"]
        data = table[()]
        for name in data.dtype.names:
            if not name.startswith("values_block_"):
                continue
            raw = table.attrs.get(f"{name}_kind")
            if raw is None:
                raise ValueError(f"table field {name} has no {name}_kind attribute")
            labels = decode_pickled_strings(bytes(raw))
            cols = [tuple(lab) if isinstance(lab, tuple | list) else (lab,) for lab in labels]
            values = np.asarray(data[name]).reshape(len(data), -1)
            blocks.append(values)
            columns += cols
    else:
        raise ValueError(f"pandas_type {kind!r} is not a DataFrame")
    if not blocks:
        raise ValueError("the DataFrame has no value blocks")
    values = np.concatenate([b.astype(np.float64) for b in blocks], axis=1)
    return values, columns
