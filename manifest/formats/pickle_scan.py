"""Name the imports a pickle-based weight file would run on load, without unpickling.

``pickletools.genops`` walks the opcodes as a stream; every ``GLOBAL``, ``INST`` and
``STACK_GLOBAL`` is an import the unpickler would perform (``STACK_GLOBAL`` takes its
module and name from the two strings most recently pushed, directly or through the
memo). Formats handled:

- a PyTorch zip checkpoint (``torch.save`` since 1.6): every ``*.pkl`` member is scanned
  (``archive/data.pkl``, TorchScript's ``constants.pkl``), tensor data members are not;
- a legacy PyTorch file: the consecutive pickles at its start (magic number, protocol,
  system info, the object, storage keys), stopping where raw storage bytes begin;
- a plain pickle (``.pkl``, ``.ckpt``).

Nothing is ever unpickled. The scan is bounded (bytes and opcodes) so it stays cheap.
"""

from __future__ import annotations

import io
import pickletools
import zipfile
from dataclasses import dataclass, field
from typing import BinaryIO

MAX_SCAN_BYTES = 256 * 1024 * 1024
MAX_PICKLES = 8  # legacy torch files hold five consecutive pickles

#: Imports a PyTorch/NumPy state dict needs; anything else is shown as unexpected.
SAFE_GLOBALS: frozenset[str] = frozenset({
    "collections.OrderedDict",
    "torch._utils._rebuild_tensor",
    "torch._utils._rebuild_tensor_v2",
    "torch._utils._rebuild_tensor_v3",
    "torch._utils._rebuild_parameter",
    "torch._utils._rebuild_parameter_with_state",
    "torch._utils._rebuild_qtensor",
    "torch._utils._rebuild_sparse_tensor",
    "torch._utils._rebuild_meta_tensor_no_storage",
    "torch._utils._rebuild_wrapper_subclass",
    "torch._tensor._rebuild_from_type_v2",
    "torch.Size",
    "torch.device",
    "torch.serialization._get_layout",
    "torch.storage.UntypedStorage",
    "torch.storage._load_from_bytes",
    "numpy.core.multiarray._reconstruct",
    "numpy._core.multiarray._reconstruct",
    "numpy.core.multiarray.scalar",
    "numpy._core.multiarray.scalar",
    "numpy.ndarray",
    "numpy.dtype",
    "_codecs.encode",
    "builtins.set",
    "builtins.frozenset",
    "builtins.slice",
    "builtins.complex",
    "builtins.bytearray",
})
_TORCH_DTYPES = frozenset({
    "float16", "bfloat16", "float32", "float64", "half", "float", "double", "complex64", "complex128", "bool",
    "uint8", "int8", "int16", "int32", "int64", "uint16", "uint32", "uint64", "float8_e4m3fn", "float8_e5m2",
    "float8_e4m3fnuz", "float8_e5m2fnuz", "float8_e8m0fnu", "float4_e2m1fn_x2", "qint8", "quint8", "qint32",
})
#: Modules whose import on load means code execution, outright.
DANGEROUS_MODULES = frozenset({
    "os", "posix", "nt", "subprocess", "sys", "socket", "shutil", "runpy", "pty", "webbrowser",
    "importlib", "pickle", "_pickle", "code", "commands", "ctypes", "marshal", "types", "asyncio",
    "http", "urllib", "requests", "multiprocessing", "platform", "signal", "tempfile", "pathlib",
})
DANGEROUS_BUILTINS = frozenset({"eval", "exec", "compile", "open", "__import__", "getattr", "setattr",
                                "delattr", "globals", "locals", "vars", "input", "breakpoint", "apply", "execfile"})
_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING", "BINSTRING", "SHORT_BINSTRING"}
_MEMO_PUT = {"PUT", "BINPUT", "LONG_BINPUT"}
_MEMO_GET = {"GET", "BINGET", "LONG_BINGET"}


class PickleScanError(ValueError):
    """The file cannot be scanned. ``not_pickle`` is True when it is neither a zip
    checkpoint nor a pickle at all (e.g. a raw OpenVINO/ONNX ``.bin``), False when it is
    one but damaged."""

    def __init__(self, message: str, *, not_pickle: bool = False):
        super().__init__(message)
        self.not_pickle = not_pickle


@dataclass(frozen=True)
class PickleScan:
    kind: str  # "torch-zip", "pickle"
    imports: tuple[str, ...]  # "module.name", sorted, unique
    members: tuple[str, ...] = ()  # scanned zip members
    complete: bool = True  # False when a bound stopped the scan or a pickle was malformed
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def unexpected(self) -> tuple[str, ...]:
        """Imports beyond what a plain state dict needs."""
        return tuple(i for i in self.imports if not is_safe_global(i))

    @property
    def dangerous(self) -> tuple[str, ...]:
        return tuple(i for i in self.imports if is_dangerous_global(i))


def is_safe_global(name: str) -> bool:
    """True for what a plain PyTorch/NumPy state dict needs (rebuild helpers, storages, dtypes)."""
    if name in SAFE_GLOBALS or name.startswith("numpy.dtypes."):
        return True
    module, _, attr = name.rpartition(".")
    return module == "torch" and (attr.endswith("Storage") or attr in _TORCH_DTYPES)


def is_dangerous_global(name: str) -> bool:
    module, _, attr = name.rpartition(".")
    top = module.split(".")[0]
    if top in DANGEROUS_MODULES:
        return True
    return top in {"builtins", "__builtin__", "__builtins__"} and attr in DANGEROUS_BUILTINS


def scan_stream(fp: BinaryIO, *, max_bytes: int = MAX_SCAN_BYTES) -> tuple[list[str], bool, int]:
    """Scan one pickle from ``fp``; returns (imports, complete, bytes consumed)."""
    imports: list[str] = []
    strings: list[str] = []  # recent string values pushed (STACK_GLOBAL operands)
    memo: dict[int, str] = {}
    start = fp.tell() if fp.seekable() else 0
    last: str | None = None
    next_memo = 0
    try:
        for op, arg, pos in pickletools.genops(fp):
            if pos is not None and pos - start > max_bytes:
                return imports, False, max_bytes
            name = op.name
            if name in _STRING_OPS and isinstance(arg, (str, bytes)):
                last = arg if isinstance(arg, str) else arg.decode("latin-1")
                strings.append(last)
                del strings[:-2]
            elif name in ("GLOBAL", "INST") and isinstance(arg, str):
                module, _, attr = arg.partition(" ")
                imports.append(f"{module}.{attr}")
                last = None
            elif name == "STACK_GLOBAL":
                if len(strings) >= 2:
                    imports.append(f"{strings[-2]}.{strings[-1]}")
                else:
                    imports.append("<unknown>.<unknown>")
                strings.clear()
                last = None
            elif name in _MEMO_PUT:
                if last is not None and isinstance(arg, int):
                    memo[arg] = last
            elif name == "MEMOIZE":
                if last is not None:
                    memo[next_memo] = last
                next_memo += 1
                continue
            elif name in _MEMO_GET:
                if isinstance(arg, int) and arg in memo:
                    last = memo[arg]
                    strings.append(last)
                    del strings[:-2]
                else:
                    last = None
            elif name == "STOP":
                break
            else:
                last = None
    except (ValueError, EOFError, UnicodeDecodeError, OverflowError, KeyError) as e:
        raise PickleScanError(f"malformed pickle: {' '.join(str(e).split())[:120]}") from None
    end = fp.tell() if fp.seekable() else 0
    return imports, True, end - start


def _is_pickle_start(b: bytes) -> bool:
    """Protocol 2+ starts with PROTO; protocol 0/1 pickles start with MARK, an empty
    dict or list, or GLOBAL."""
    return (len(b) >= 2 and b[0] == 0x80 and 2 <= b[1] <= 5) or b[:1] in (b"(", b"}", b"]", b"c")


def scan_file(fp: BinaryIO, size: int) -> PickleScan:
    """Scan a pickle-based weight file opened for reading (seekable)."""
    magic = fp.read(4)
    fp.seek(0)
    if magic == b"PK\x03\x04":
        return _scan_zip(fp)
    if not _is_pickle_start(magic):
        raise PickleScanError("neither a zip checkpoint nor a pickle", not_pickle=True)
    imports: list[str] = []
    complete = True
    budget = MAX_SCAN_BYTES
    count = 0
    while count < MAX_PICKLES and fp.tell() < size:
        if count:
            peek = fp.read(2)
            fp.seek(-len(peek), io.SEEK_CUR)
            if not (len(peek) == 2 and peek[0] == 0x80 and 2 <= peek[1] <= 5):
                break  # raw storage bytes of a legacy torch file follow the pickles
        try:
            found, ok, used = scan_stream(fp, max_bytes=budget)
        except PickleScanError:
            if count == 0:
                raise
            break  # storage bytes that merely looked like a pickle start
        imports.extend(found)
        count += 1
        budget -= used
        if not ok or budget <= 0:
            complete = False
            break
    return PickleScan("pickle", tuple(sorted(set(imports))), complete=complete)


def _scan_zip(fp: BinaryIO) -> PickleScan:
    try:
        zf = zipfile.ZipFile(fp)
    except Exception as e:  # zipfile raises many types on damaged input (BadZipFile, OverflowError, ...)
        raise PickleScanError(f"damaged zip archive: {type(e).__name__}: {e}") from None
    imports: list[str] = []
    members: list[str] = []
    complete = True
    budget = MAX_SCAN_BYTES
    with zf:
        for zi in zf.infolist():
            if not zi.filename.endswith(".pkl"):
                continue
            if zi.file_size > budget:
                complete = False
                continue
            members.append(zi.filename)
            try:
                with zf.open(zi) as m:
                    data = m.read(budget + 1)  # a member is the pickle alone, bounded above
            except Exception as e:  # BadZipFile, NotImplementedError (version), RuntimeError (encrypted), zlib.error, ...
                raise PickleScanError(f"damaged zip member {zi.filename}: {type(e).__name__}: {e}") from None
            budget -= len(data)
            found, ok, _ = scan_stream(io.BytesIO(data))
            imports.extend(found)
            complete = complete and ok
    if not members:
        raise PickleScanError("zip archive holds no pickle (*.pkl) member", not_pickle=True)
    return PickleScan("torch-zip", tuple(sorted(set(imports))), tuple(members), complete)
