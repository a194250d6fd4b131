"""Read a PyTorch state dict without PyTorch and without running the file's code.

``torch.load`` and ``pickle.load`` execute whatever a pickle names, so a weights file from anywhere could run
code. This reader unpickles through an allow-list: the state dict container (``collections.OrderedDict``),
``torch._utils._rebuild_tensor_v2`` and the float/long storage types, each replaced by a harmless stand-in;
any other global in the file is refused. Tensors come back as numpy arrays.

It reads the legacy (non-zip) serialization that ``torch.save(..., _use_new_zipfile_serialization=False)``
writes and older PyTorch wrote by default: a magic number, the protocol version and system info (three small
pickles), the state dict pickle whose tensors refer to storages by key, the list of storage keys, then each
storage as an int64 element count followed by its raw little-endian data.
"""
import collections
import os
import pickle
from dataclasses import dataclass

import numpy as np

from transferkit.errors import TransferkitError

_MAGIC = 0x1950A86A20F9469CFC6C
_PROTOCOL = 1001
_STORAGES = {"FloatStorage": np.dtype("<f4"), "DoubleStorage": np.dtype("<f8"), "HalfStorage": np.dtype("<f2"),
             "LongStorage": np.dtype("<i8"), "IntStorage": np.dtype("<i4")}


@dataclass(frozen=True)
class _Storage:
    dtype: np.dtype


@dataclass(frozen=True)
class _TensorRef:
    key: str
    dtype: np.dtype
    offset: int
    shape: tuple
    stride: tuple


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    key, dtype = storage
    return _TensorRef(key, dtype, int(storage_offset), tuple(size), tuple(stride))


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the names a state dict of tensors needs; anything else is an error, never an import."""

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGES:
            return _Storage(_STORAGES[name])
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: not part of a plain state dict")

    def persistent_load(self, pid):
        # ('storage', storage_type, key, location, size[, view_metadata])
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage" and isinstance(pid[1], _Storage)):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r:.80}")
        return str(pid[2]), pid[1].dtype


def _restricted_load(handle):
    return _RestrictedUnpickler(handle).load()


def load_state_dict(path):
    """The tensors of a legacy PyTorch checkpoint as ``{name: numpy array}``, read through an allow-list.

    Raises a :class:`TransferkitError` for a file that is not a legacy checkpoint of plain tensors.

    Example:
        >>> state = load_state_dict("efficientnet-lite0-57934424.pth")
        >>> state["_conv_stem.weight"].shape
        (32, 3, 3, 3)
    """
    try:
        with open(path, "rb") as handle:
            if handle.read(2) == b"PK":
                raise TransferkitError(f"{path} is a zip-format PyTorch checkpoint; only the legacy format is read")
            handle.seek(0)
            if _restricted_load(handle) != _MAGIC or _restricted_load(handle) != _PROTOCOL:
                raise TransferkitError(f"{path} is not a legacy PyTorch checkpoint (wrong magic number)")
            info = _restricted_load(handle)
            if not info.get("little_endian", True):
                raise TransferkitError(f"{path} was saved big-endian; only little-endian checkpoints are read")
            refs = _restricted_load(handle)
            if not isinstance(refs, dict) or not all(isinstance(v, _TensorRef) for v in refs.values()):
                raise TransferkitError(f"{path} does not hold a state dict of tensors")
            keys = _restricted_load(handle)
            size = os.fstat(handle.fileno()).st_size
            storages = {}
            for key in keys:
                dtype = _storage_dtype(refs, key)
                count = int(np.frombuffer(handle.read(8), "<i8")[0])
                if not 0 <= count * dtype.itemsize <= size - handle.tell():
                    raise TransferkitError(f"{path} is truncated or corrupt (storage {key})")
                storages[key] = np.frombuffer(handle.read(count * dtype.itemsize), dtype)
            return {name: _view(storages[ref.key], ref) for name, ref in refs.items()}
    except (pickle.UnpicklingError, EOFError, ValueError, AttributeError, IndexError, TypeError, KeyError) as err:
        raise TransferkitError(f"cannot read {path} as a PyTorch state dict: {err}") from None


def _storage_dtype(refs, key):
    for ref in refs.values():
        if isinstance(ref, _TensorRef) and ref.key == key:
            return ref.dtype
    raise TransferkitError(f"storage {key} is used by no tensor")


def _view(storage, ref):
    """The tensor ``ref`` inside ``storage`` (element offset and strides, as PyTorch stores them), copied."""
    itemsize = storage.dtype.itemsize
    if ref.offset < 0 or min(ref.stride, default=0) < 0 or min(ref.shape, default=0) < 0 \
            or len(ref.shape) != len(ref.stride):
        raise TransferkitError(f"tensor {ref.key} has a negative offset, stride or size")
    if min(ref.shape, default=1) == 0:
        return np.zeros(ref.shape, storage.dtype)
    needed = ref.offset + sum((n - 1) * s for n, s in zip(ref.shape, ref.stride)) + 1
    if needed > storage.size:
        raise TransferkitError(f"tensor {ref.key} reaches past its storage")
    view = np.lib.stride_tricks.as_strided(storage[ref.offset:], shape=ref.shape,
                                           strides=[s * itemsize for s in ref.stride])
    return np.array(view)
