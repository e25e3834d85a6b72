"""A restricted pickle machine for untrusted checkpoints, and the errors and limits of the reader.

Python's unpickler trusts its input in ways a hostile file exploits without
running any code: a memo index sizes an array, a deeply nested tuple overflows
the C stack when it is hashed, tuples that share sub-tuples take exponential
time to hash, BUILD mutates whatever object it is applied to. This machine
walks the opcodes with :func:`pickletools.genops` and builds only plain data
(``None``, bools, ints, floats, str, bytes, tuples, lists, dicts) plus what the
caller's ``find_class``/``persistent_load`` return. Every bound is checked
before the object it concerns is built:

* dict keys are ``str`` or ``int`` only, so nothing a file builds is ever
  hashed except those; tuples, lists and dicts are never hashed, compared or
  repr()'d;
* nesting depth, memo entries, objects, opcodes, string and int sizes are capped;
* a list or dict may not be changed once it sits inside another container, so
  the object graph is acyclic and the depth recorded for each container stays
  exact;
* BUILD is allowed only on a dict (torch attaches ``_metadata`` to a state dict
  that way) and its state is dropped; REDUCE only calls what ``find_class``
  returned as a :class:`Reducer`.
"""

from __future__ import annotations

import pickletools

from shiftnet_jax.torchfile.limits import (
    MAX_INT_BITS,
    MAX_INT_KEYS,
    MAX_STRING,
    CheckpointError,
    Limits,
    UnsafeCheckpointError,
    UnsupportedCheckpointError,
    limit,
    quote,
)


def describe(x) -> str:
    """A short, bounded description of a value from the file (never its repr)."""
    if isinstance(x, (str, int)) and not isinstance(x, bool):
        return quote(x, 40)
    if isinstance(x, Reducer):
        return f"the function {x.name}"
    if isinstance(x, (tuple, list, dict)):
        return f"a {type(x).__name__} of {len(x)}"
    return "a " + type(x).__name__


class Reducer:
    """A callable that REDUCE may apply: ``fn(*args)``, checked by ``fn`` itself."""

    __slots__ = ("name", "fn")

    def __init__(self, name: str, fn):
        self.name, self.fn = name, fn


_CONTAINERS = (tuple, list, dict)
_STR_OPS = {"STRING", "BINSTRING", "SHORT_BINSTRING"}  # Python 2 str: decoded as UTF-8, like torch
_UNICODE_OPS = {"UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8"}
_BYTES_OPS = {"BINBYTES", "SHORT_BINBYTES", "BINBYTES8"}
_INT_OPS = {"INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4"}
_CONST = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False}


class Budget:
    """What the pickles of one file have spent so far (see :func:`load_pickle`)."""

    def __init__(self):
        self.opcodes = self.objects = self.int_keys = 0


class _Machine:
    def __init__(self, find_class, persistent_load, limits: Limits):
        self.find_class, self.persistent_load, self.limits = find_class, persistent_load, limits
        self.stack, self.marks, self.memo = [], [], {}
        self.depth = {}      # id(container) -> nesting depth
        self.sealed = set()  # ids of lists/dicts already inside another container
        self.alive = []      # keeps every container alive, so that ids stay unique
        self.objects = self.opcodes = self.int_keys = 0

    # -- bookkeeping
    def _depth(self, x) -> int:
        return self.depth.get(id(x), 0) if isinstance(x, _CONTAINERS) else 0

    def _new(self, x, children=()):
        """Count a new object; for a container, record its depth and seal its children."""
        self.objects += 1
        if self.objects > self.limits.max_objects:
            raise limit("objects built", self.objects, "max_objects", self.limits.max_objects)
        if isinstance(x, _CONTAINERS) and id(x) not in self.depth:
            depth = 1
            for c in children:
                depth = max(depth, self._seal(c) + 1)
            self._set_depth(x, depth)
            self.alive.append(x)
        return x

    def _seal(self, child) -> int:
        if isinstance(child, (list, dict)):
            self.sealed.add(id(child))
        return self._depth(child)

    def _set_depth(self, x, depth):
        if depth > self.limits.max_depth:
            raise limit("containers nested", depth, "max_depth", self.limits.max_depth)
        self.depth[id(x)] = depth

    def _grow(self, target, kind, children):
        """Add children to an open list/dict (APPEND(S), SETITEM(S))."""
        if type(target) is not kind:
            raise CheckpointError(f"malformed pickle: adds items to {describe(target)}")
        if id(target) in self.sealed or any(c is target for c in children):
            raise CheckpointError("malformed pickle: a container is changed after it was used "
                                  "(cyclic or shared data a state dict never has)")
        depth = self._depth(target)
        for c in children:
            depth = max(depth, self._seal(c) + 1)
        self._set_depth(target, depth)

    def _pop_mark(self):
        if not self.marks:
            raise CheckpointError("malformed pickle: no MARK on the stack")
        start = self.marks.pop()
        items = self.stack[start:]
        del self.stack[start:]
        return items

    def _pop(self):
        if len(self.stack) <= (self.marks[-1] if self.marks else 0):
            raise CheckpointError("malformed pickle: pops from an empty stack")
        return self.stack.pop()

    # -- opcodes
    def run(self, f):
        for op, arg, _ in pickletools.genops(f):
            self.opcodes += 1
            if self.opcodes > self.limits.max_opcodes:
                raise limit("opcodes", self.opcodes, "max_opcodes", self.limits.max_opcodes)
            name = op.name
            if name == "STOP":
                if len(self.stack) != 1 or self.marks:
                    raise CheckpointError("malformed pickle: the stack is not one object at STOP")
                return self.stack[0]
            self.step(name, arg)
        raise CheckpointError("truncated pickle: no STOP opcode")  # pragma: no cover (genops raises)

    def step(self, name, arg):  # noqa: C901 - one branch per opcode family reads best
        push = self.stack.append
        if name in ("PROTO", "FRAME"):
            if name == "PROTO" and not 0 <= arg <= 5:
                raise CheckpointError(f"malformed pickle: protocol {describe(arg)}")
        elif name in _CONST:
            push(self._new(_CONST[name]))
        elif name in _INT_OPS:
            if isinstance(arg, int) and not isinstance(arg, bool) and arg.bit_length() > MAX_INT_BITS:
                raise limit("an integer's bits", arg.bit_length(), "MAX_INT_BITS", MAX_INT_BITS)
            push(self._new(arg))
        elif name in ("FLOAT", "BINFLOAT"):
            push(self._new(float(arg)))
        elif name in _STR_OPS or name in _UNICODE_OPS or name in _BYTES_OPS:
            if len(arg) > MAX_STRING:
                raise limit("a string's length", len(arg), "MAX_STRING", MAX_STRING)
            if name in _STR_OPS:  # genops gives latin-1 text
                try:
                    arg = arg.encode("latin-1").decode("utf-8")
                except UnicodeError:
                    raise CheckpointError("malformed pickle: a string is not UTF-8") from None
            push(self._new(arg))
        elif name == "MARK":
            if len(self.marks) >= self.limits.max_depth:
                raise limit("MARKs nested", len(self.marks) + 1, "max_depth", self.limits.max_depth)
            self.marks.append(len(self.stack))
        elif name == "POP":
            if self.marks and len(self.stack) == self.marks[-1]:
                self.marks.pop()  # as pickle.py: POP on an empty frame discards the mark
            else:
                self._pop()
        elif name == "POP_MARK":
            self._pop_mark()
        elif name == "DUP":
            push(self._pop())
            push(self.stack[-1])
        elif name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
            if not self.stack:
                raise CheckpointError("malformed pickle: memoizes an empty stack")
            index = len(self.memo) if name == "MEMOIZE" else arg
            # Picklers number memo entries 0, 1, 2...: a larger index is hostile (the C
            # unpickler sizes an array by it).
            if not 0 <= index < self.limits.max_memo:
                raise limit("memo index", index, "max_memo", self.limits.max_memo)
            self.memo[index] = self.stack[-1]
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            if arg not in self.memo:
                raise CheckpointError(f"malformed pickle: memo entry {describe(arg)} was never stored")
            push(self.memo[arg])
        elif name in ("EMPTY_TUPLE", "TUPLE1", "TUPLE2", "TUPLE3", "TUPLE"):
            n = {"EMPTY_TUPLE": 0, "TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3}.get(name)
            items = self._pop_mark() if n is None else [self._pop() for _ in range(n)][::-1]
            push(self._new(tuple(items), items))
        elif name in ("EMPTY_LIST", "LIST"):
            items = self._pop_mark() if name == "LIST" else []
            push(self._new(list(items), items))
        elif name in ("EMPTY_DICT", "DICT"):
            items = self._pop_mark() if name == "DICT" else []
            d = self._new({})
            self._setitems(d, items)
            push(d)
        elif name in ("APPEND", "APPENDS"):
            items = self._pop_mark() if name == "APPENDS" else [self._pop()]
            target = self._pop()
            self._grow(target, list, items)
            target.extend(items)
            push(target)
        elif name in ("SETITEM", "SETITEMS"):
            if name == "SETITEM":
                value = self._pop()
                items = [self._pop(), value]
            else:
                items = self._pop_mark()
            target = self._pop()
            self._setitems(target, items)
            push(target)
        elif name in ("GLOBAL", "STACK_GLOBAL", "INST"):
            if name == "STACK_GLOBAL":
                qual = self._pop()
                module = self._pop()
            else:
                module, _, qual = arg.partition(" ")
            if type(module) is not str or type(qual) is not str:
                raise CheckpointError("malformed pickle: a global named by a non-string")
            obj = self.find_class(module, qual)  # refuses anything not allow-listed
            if name == "INST":
                raise UnsafeCheckpointError(f"refuses to load: the pickle instantiates "
                                            f"{quote(module + '.' + qual, 80)[1:-1]}")
            push(self._new(obj))
        elif name == "REDUCE":
            args = self._pop()
            func = self._pop()
            if not isinstance(func, Reducer) or type(args) is not tuple:
                raise CheckpointError(f"malformed pickle: calls {describe(func)} on {describe(args)}")
            for a in args:
                self._seal(a)
            try:
                result = func.fn(*args)
            except TypeError:  # wrong number of arguments
                raise CheckpointError(f"malformed pickle: {func.name} called with "
                                      f"{len(args)} arguments") from None
            push(self._new(result))
        elif name == "BUILD":
            state = self._pop()
            target = self.stack[-1] if self.stack else None
            # torch sets a state dict's _metadata this way; anything else could mutate
            # an allow-listed object (a function's __defaults__...), so it is refused.
            if type(target) is not dict or not (state is None or type(state) is dict):
                raise CheckpointError(f"malformed pickle: sets the state of {describe(target)} "
                                      "(only a state dict's metadata may be set)")
            self._grow(target, dict, [state])  # the state is checked, then dropped
        elif name in ("BINPERSID", "PERSID"):
            pid = self._pop() if name == "BINPERSID" else self._new(arg)
            self._seal(pid)
            push(self._new(self.persistent_load(pid)))
        elif name in ("EXT1", "EXT2", "EXT4"):
            raise UnsafeCheckpointError("refuses to load: the pickle uses the copyreg extension "
                                        "registry, which a state dict never needs")
        elif name in ("OBJ", "NEWOBJ", "NEWOBJ_EX"):
            raise UnsafeCheckpointError(f"refuses to load: the pickle instantiates a class ({name}), "
                                        "which a state dict never needs")
        else:  # sets, bytearrays, out-of-band buffers
            raise UnsupportedCheckpointError(f"the pickle uses opcode {name} (sets, bytearrays, "
                                             "buffers), which a state dict never contains")

    def _setitems(self, target, items):
        if len(items) % 2:
            raise CheckpointError("malformed pickle: a dict with an odd number of items")
        keys = items[0::2]
        for k in keys:
            # Only str/int keys: hashing them is cheap and bounded; a tuple key could be
            # 300,000 deep or share sub-tuples (its hash would crash or never end).
            if type(k) not in (str, int):
                raise CheckpointError(f"malformed pickle: a dict key is {describe(k)}; "
                                      "a state dict's keys are strings")
            if type(k) is int:
                # Python's int hash is k mod 2**61 - 1, unsalted: 240,000 keys k * (2**61 - 1)
                # all hash to 0 and insertion turns quadratic. Below 2**31 hashes are the keys
                # themselves (only -1 and -2 share one), and their count is bounded.
                self.int_keys += 1
                if not -(2 ** 31) <= k < 2 ** 31:
                    raise CheckpointError(f"malformed pickle: a dict key is the integer {describe(k)}; "
                                          "integer keys (optimizer state ids) are below 2**31")
                if self.int_keys > MAX_INT_KEYS:
                    raise limit("integer dict keys", self.int_keys, "MAX_INT_KEYS", MAX_INT_KEYS)
        self._grow(target, dict, items[1::2])
        for k, v in zip(keys, items[1::2]):
            target[k] = v


def load_pickle(f, find_class, persistent_load, limits: Limits = Limits(), budget=None):
    """Build the object of the pickle at ``f`` (positioned after it on return).

    ``find_class(module, name)`` returns a :class:`Reducer`, a plain value, or
    raises; ``persistent_load(pid)`` turns a persistent id into an object.
    ``budget`` (a :class:`Budget`) carries the opcodes, objects and integer keys spent over
    several pickles of one file (a legacy file has five): the limits bound their sum.
    Raises :class:`CheckpointError` (or a subclass) for anything else.
    """
    machine = _Machine(find_class, persistent_load, limits)
    budget = Budget() if budget is None else budget
    machine.opcodes, machine.objects, machine.int_keys = budget.opcodes, budget.objects, budget.int_keys
    try:
        return machine.run(f)
    except CheckpointError:
        raise
    except (ValueError, EOFError, OverflowError, MemoryError) as e:
        # genops: unknown opcode, an argument cut short, a bad decimal...
        raise CheckpointError(f"truncated or corrupt pickle ({type(e).__name__}: {str(e)[:80]})") from None
    finally:
        budget.opcodes, budget.objects, budget.int_keys = machine.opcodes, machine.objects, machine.int_keys
