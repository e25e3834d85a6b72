"""The checkpoint reader's errors and limits (every bound is a keyword argument of
:func:`shiftnet_jax.torchfile.reader.read_torch_state_dict`)."""

from __future__ import annotations

import dataclasses

from shiftnet_jax.errors import (
    UserError,
    quote,  # noqa: F401 - re-exported for the reader's modules
)

# Defaults, generous for any real state dict; each is a keyword argument of
# torchfile.reader.read_torch_state_dict.
MAX_PICKLE_BYTES = 16 << 20   # the object pickle (a 1000-tensor state dict needs ~100 KB)
MAX_DEPTH = 32                # containers inside containers (a state dict needs ~4)
MAX_MEMO = 1 << 20            # memo entries
MAX_OBJECTS = 500_000         # objects built (~15 per tensor)
MAX_OPCODES = 1_000_000       # opcodes executed (~30 per tensor; ~1.3 us each)
MAX_STRING = 1 << 20          # characters of one str/bytes
MAX_INT_BITS = 128            # the legacy format's magic number has 77
MAX_INT_KEYS = 100_000        # integer dict keys (optimizer state ids; a model state dict has none)


class CheckpointError(UserError):
    """Any problem reading a checkpoint; str(e) is one line naming the file and the problem."""


class UnsafeCheckpointError(CheckpointError):
    """The pickle asks for a global/callable outside the allow-list."""


class UnsupportedCheckpointError(CheckpointError):
    """A genuine construct the reader cannot represent (a dtype numpy lacks...)."""


class CheckpointLimitError(CheckpointError):
    """A configurable limit was hit; the message names it. Raise it for a trusted, unusual file."""


@dataclasses.dataclass(frozen=True)
class Limits:
    max_pickle_bytes: int = MAX_PICKLE_BYTES
    max_depth: int = MAX_DEPTH
    max_memo: int = MAX_MEMO
    max_objects: int = MAX_OBJECTS
    max_opcodes: int = MAX_OPCODES


def limit(what: str, value, name: str, bound) -> CheckpointLimitError:
    return CheckpointLimitError(f"{what} ({value}) exceeds {name}={bound}")
