"""Module, Parameter and Sequential: the containers every lucid model is built from."""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, NamedTuple

import numpy as np

from lucid import _hooks
from lucid.tensor import Tensor

# Bumped by every attribute assignment or deletion on any Module: a compiled module compares
# STRUCTURE_VERSION[0] with the value it last saw, once per call (a list: one index on the hot
# path, no call), and looks closer only when it moved.
STRUCTURE_VERSION = [0]


def structure_version() -> int:
    """A number that changes whenever any Module's attributes are assigned or deleted."""
    return STRUCTURE_VERSION[0]


Walk = tuple[tuple[str, "Module"], ...]  # (dotted name, module) pairs, as named_modules gives

# The walks `module_walk` made inside `cached_walks()`: id(root) -> (STRUCTURE_VERSION, root,
# walk); None outside it. A context variable, so a build on another thread keeps its own.
_WALKS: ContextVar[dict[int, tuple[int, Module, Walk]] | None] = ContextVar(
    "lucid_module_walks", default=None
)


@contextmanager
def cached_walks() -> Iterator[None]:
    """Within the block, `module_walk` walks each root once while no Module attribute changes.
    A warm compile of MobileNetV3-Small (210 modules) walks its tree 8 times, 0.18 ms each:
    trace scopes, parameters, buffers, empty-batch check, guards, forwards and parameter slots.
    Nothing is kept after the block, so a module taken out of the tree is never held here."""
    if _WALKS.get() is not None:  # nested: the outer block's walks serve
        yield
        return
    token = _WALKS.set({})
    try:
        yield
    finally:
        _WALKS.reset(token)


def module_walk(root: Module) -> Walk:
    """`root.named_modules()` as a tuple, reused inside `cached_walks()` until some Module
    attribute is assigned or deleted (STRUCTURE_VERSION moves)."""
    walks = _WALKS.get()
    if walks is None:
        return tuple(root.named_modules())
    known = walks.get(id(root))
    if known is not None and known[0] == STRUCTURE_VERSION[0] and known[1] is root:
        return known[2]
    walk = tuple(root.named_modules())
    walks[id(root)] = (STRUCTURE_VERSION[0], root, walk)
    return walk


def _tree(root: Module, prefix: str) -> Iterable[tuple[str, Module]]:
    """`root.named_modules(prefix)`: the cached walk inside `cached_walks()`, else the
    generator itself (which sees the tree as it is at each step of the iteration)."""
    if prefix or _WALKS.get() is None:
        return root.named_modules(prefix)
    return module_walk(root)


def parameters_in(walk: Iterable[tuple[str, Module]]) -> Iterator[tuple[str, Parameter]]:
    """(dotted path, parameter) of the modules of `walk`, each parameter once (see
    Module.named_parameters)."""
    seen: set[int] = set()
    for mod_name, module in walk:
        for name, p in module._parameters.items():
            if p is None or id(p) in seen:
                continue
            seen.add(id(p))
            yield (f"{mod_name}.{name}" if mod_name else name), p


def buffers_in(walk: Iterable[tuple[str, Module]]) -> Iterator[tuple[str, Tensor]]:
    """(dotted path, tensor) of the buffers of the modules of `walk`, each once (see
    Module.named_buffers)."""
    seen: set[int] = set()
    for mod_name, module in walk:
        for name, value in module.__dict__.items():
            if type(value) is not Tensor or id(value) in seen:
                continue
            seen.add(id(value))
            yield (f"{mod_name}.{name}" if mod_name else name), value


class Parameter(Tensor):
    """A Tensor that a Module registers as trainable; always requires grad.

    Invariant: `_version` grows by one each time the data is changed in place by an optimizer,
    `load_state_dict` or item assignment, so a compiled model can tell its packed copy is stale.
    """

    def __init__(self, data: Any, dtype: Any = None) -> None:
        super().__init__(data, requires_grad=True, dtype=dtype)
        self._version = 0


class LoadResult(NamedTuple):
    """What `load_state_dict(strict=False)` skipped."""

    missing_keys: list[str]
    unexpected_keys: list[str]


class Module:
    """Base class of all layers and models.

    Invariants: assigning a Parameter or Module to an attribute registers it under that name
    (in assignment order) in `_parameters` / `_modules` as well as setting the attribute;
    assigning anything else (None excepted) unregisters the name. A registered child knows its
    owner (weakly) and its name there, which gives it a dotted `path` for error messages.
    """

    training: bool  # set in __init__, flipped by train() / eval()
    # Set in __init__ through object.__setattr__ (our __setattr__ needs _parameters to exist);
    # annotations only, so instances keep them in __dict__ and the class has none.
    _parameters: dict[str, Parameter | None]
    _modules: dict[str, Module | None]
    _owner: weakref.ref[Module] | None
    _name: str

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_owner", None)
        object.__setattr__(self, "_name", "")

    # ------------------------------------------------------------ registration

    def __setattr__(self, name: str, value: Any) -> None:
        params = self.__dict__.get("_parameters")
        if params is None:
            raise AttributeError(
                f"cannot assign {name!r} before Module.__init__(): call super().__init__() "
                f"first in {type(self).__name__}.__init__"
            )
        modules = self._modules
        if isinstance(value, Parameter):
            modules.pop(name, None)
            params[name] = value
        elif isinstance(value, Module):
            params.pop(name, None)
            modules[name] = value
            object.__setattr__(value, "_owner", weakref.ref(self))
            object.__setattr__(value, "_name", name)
        elif value is None and (name in params or name in modules):
            # A deliberately absent parameter (e.g. Linear(bias=False)) keeps its slot.
            (params if name in params else modules)[name] = None
        else:
            params.pop(name, None)
            modules.pop(name, None)
        object.__setattr__(self, name, value)
        STRUCTURE_VERSION[0] += 1

    def __delattr__(self, name: str) -> None:
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        object.__delattr__(self, name)
        STRUCTURE_VERSION[0] += 1

    # ------------------------------------------------------------ structure

    def structure(self) -> dict[str, Any]:
        """What a trace of this module may have assumed about it, by dotted name: each
        submodule (by identity), each parameter's type (its values are read at every call, so
        a same-shaped replacement is a value, not a change), and each plain attribute's value
        (numbers, strings, bools, None and tuples of them; anything else, a constant tensor
        included, by identity)."""
        out: dict[str, Any] = {}
        for path, module in module_walk(self):
            prefix = f"{path}." if path else ""
            out[path or "."] = (type(module), id(module))
            for name, value in module.__dict__.items():
                if name in _INTERNAL:
                    continue
                if isinstance(value, Parameter):
                    out[prefix + name] = ("parameter", value.data.shape, value.data.dtype)
                else:
                    out[prefix + name] = value if _plain(value) else (type(value), id(value))
        return out

    # ------------------------------------------------------------ pickling

    def __getstate__(self) -> dict[str, Any]:
        """The module's attributes without its owner link: a weak reference does not pickle,
        and an owner that is pickled too relinks its children when it is restored."""
        state = dict(self.__dict__)
        state["_owner"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        for name, child in self._modules.items():  # children are restored before their owner
            if child is not None:
                object.__setattr__(child, "_owner", weakref.ref(self))
                object.__setattr__(child, "_name", name)

    @property
    def path(self) -> str:
        """This module's dotted name from the outermost module that owns it ('' for a root)."""
        names: list[str] = []
        node: Module | None = self
        while node is not None and node._owner is not None:
            names.append(node._name)
            node = node._owner()
        return ".".join(reversed(names))

    # ------------------------------------------------------------ traversal

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """(dotted name, module) for this module and every descendant, pre-order, each once."""
        seen: set[int] = set()
        stack: list[tuple[str, Module]] = [(prefix, self)]
        while stack:
            name, module = stack.pop()
            if id(module) in seen:
                continue
            seen.add(id(module))
            yield name, module
            children = [(f"{name}.{n}" if name else n, m) for n, m in module.named_children()]
            stack.extend(reversed(children))

    def modules(self) -> Iterator[Module]:
        """This module and every descendant."""
        for _, module in _tree(self, ""):
            yield module

    def named_children(self) -> Iterator[tuple[str, Module]]:
        """(name, module) for each direct submodule."""
        for name, module in self._modules.items():
            if module is not None:
                yield name, module

    def _submodule(self, name: str) -> Module:
        """The module registered as `name`, for containers (Sequential, ModuleList, ModuleDict),
        whose slots are never deliberately empty: one set to None is an error, not a skip."""
        module = self._modules[name]
        if module is None:
            raise TypeError(f"{type(self).__name__}: {name!r} was set to None, expected a Module")
        return module

    def _submodules(self) -> list[Module]:
        """Every registered module of a container, in order (see `_submodule`)."""
        return [self._submodule(name) for name in self._modules]

    def children(self) -> Iterator[Module]:
        """Each direct submodule."""
        for _, module in self.named_children():
            yield module

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """(dotted path such as 'fc1.weight', parameter) for every parameter, each once."""
        return parameters_in(_tree(self, prefix))

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, Tensor]]:
        """(dotted path, tensor) for every Tensor attribute that is not a Parameter, each once:
        state that forward reads but no optimizer trains (a mask, a constant table). A
        compiled model reads them at every call, like parameters, so in-place changes count."""
        return buffers_in(_tree(self, prefix))

    def register_buffer(self, name: str, tensor: Tensor | None, persistent: bool = True) -> None:
        """Set the buffer `name` (a plain Tensor attribute, see named_buffers); a persistent one
        is part of state_dict and load_state_dict, as in PyTorch (running statistics)."""
        if tensor is not None and type(tensor) is not Tensor:
            raise TypeError(f"register_buffer({name!r}): expected a Tensor, got {type(tensor)}")
        setattr(self, name, tensor)
        kept = tuple(n for n in self.__dict__.get("_state_buffers", ()) if n != name)
        object.__setattr__(self, "_state_buffers", (*kept, name) if persistent else kept)

    def _state_buffers_named(self) -> Iterator[tuple[str, Tensor]]:
        """(dotted path, tensor) of every persistent registered buffer that is set."""
        for mod_name, module in self.named_modules():
            for name in module.__dict__.get("_state_buffers", ()):
                value = module.__dict__.get(name)
                if type(value) is Tensor:
                    yield (f"{mod_name}.{name}" if mod_name else name), value

    def parameters(self) -> Iterator[Parameter]:
        """Every parameter of this module and its descendants, each once."""
        for _, p in self.named_parameters():
            yield p

    # ------------------------------------------------------------ state

    def state_dict(self) -> dict[str, np.ndarray]:
        """A copy of every parameter's and persistent buffer's data, keyed by dotted path."""
        state = {name: p.data.copy() for name, p in self.named_parameters()}
        state.update((name, t.data.copy()) for name, t in self._state_buffers_named())
        return state

    def load_state_dict(self, state: Mapping[str, Any], strict: bool = True) -> LoadResult:
        """Copy `state` into the parameters in place; nothing changes if any check fails."""
        own: dict[str, Tensor] = dict(self.named_parameters())
        own.update(self._state_buffers_named())
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        problems = []
        if strict and missing:
            problems.append(f"missing keys: {', '.join(missing)}")
        if strict and unexpected:
            problems.append(f"unexpected keys: {', '.join(unexpected)}")
        arrays = {}
        for key, value in state.items():
            if key not in own:
                continue
            if isinstance(value, Tensor):
                value = value.data
            elif hasattr(value, "detach") and hasattr(value, "cpu") and hasattr(value, "numpy"):
                value = value.detach().cpu().numpy()  # a torch tensor, without importing torch
            arr = np.asarray(value)
            if arr.shape != own[key].shape:
                problems.append(
                    f"shape mismatch for {key}: state has {arr.shape}, model has {own[key].shape}"
                )
            elif not np.can_cast(arr.dtype, own[key].data.dtype, casting="same_kind"):
                problems.append(
                    f"dtype mismatch for {key}: state has {arr.dtype}, model has {own[key].data.dtype}"
                )
            arrays[key] = arr
        if problems:
            raise ValueError(
                f"load_state_dict into {type(self).__name__} failed: " + "; ".join(problems)
            )
        for key, arr in arrays.items():
            p = own[key]
            p.data[...] = arr  # in place: optimizers and compiled models hold this array
            if isinstance(p, Parameter):
                p._version += 1
        return LoadResult(missing, unexpected)

    def save(self, path: Any) -> None:
        """Write `state_dict()` to `path` with `lucid.save` (read back with `lucid.load`)."""
        from lucid.io import save

        save(self.state_dict(), path)

    def train(self, mode: bool = True) -> Module:
        """Set training mode on this module and all descendants; returns self."""
        for module in self.modules():
            object.__setattr__(module, "training", bool(mode))
        return self

    def eval(self) -> Module:
        """Set evaluation mode (Dropout becomes the identity); returns self."""
        return self.train(False)

    def zero_grad(self) -> None:
        """Forget every parameter's gradient."""
        for p in self.parameters():
            p.grad = None

    # ------------------------------------------------------------ conversion and freezing

    def apply(self, fn: Any) -> Module:
        """Call fn(module) on every descendant, children first, then on self; returns self."""
        for module in reversed(list(self.modules())):
            fn(module)
        return self

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        """Freeze (False) or unfreeze every parameter: a frozen one gets no `.grad`, in eager
        and compiled training alike; returns self."""
        for p in self.parameters():
            p.requires_grad = bool(requires_grad)
        return self

    def to(self, dtype: Any) -> Module:
        """Convert every floating parameter to `dtype` in place (PyTorch's rule: the Parameter
        objects stay, their `.data` is replaced); returns self.

        Gradients are converted too; optimizer state made before keeps the old dtype. Floating
        buffers registered with `register_buffer` (running statistics) are converted too, as
        in PyTorch; other plain Tensor attributes are left as they are. Bumps the structure version, so a compiled model sees the new parameter
        types and recompiles."""
        dt = np.dtype(dtype)
        if dt.kind != "f":
            raise TypeError(f"{type(self).__name__}.to: expected a floating dtype, got {dt}")
        for p in self.parameters():
            if p.data.dtype.kind == "f" and p.data.dtype != dt:
                p.data = p.data.astype(dt)
                p.grad = None if p.grad is None else p.grad.astype(dt)
                p._version += 1
        for _, t in self._state_buffers_named():
            if t.data.dtype.kind == "f" and t.data.dtype != dt:
                t.data = t.data.astype(dt)
        STRUCTURE_VERSION[0] += 1  # parameter types are part of Module.structure
        return self

    def double(self) -> Module:
        """`to(float64)`."""
        return self.to(np.float64)

    def float(self) -> Module:
        """`to(float32)`."""
        return self.to(np.float32)

    # ------------------------------------------------------------ calling and printing

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The computation; subclasses define it."""
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        tracer = _hooks.active
        if tracer is None:
            return self.forward(*args, **kwargs)
        tracer.enter_module(self)  # a pair of calls, not a `with`: this runs per module call
        try:
            return self.forward(*args, **kwargs)
        finally:
            tracer.exit_module()

    def extra_repr(self) -> str:
        """The text inside this module's parentheses in its repr."""
        return ""

    def __repr__(self) -> str:
        lines = []
        for name, child in self.named_children():
            text = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {text}")
        if not lines:
            return f"{type(self).__name__}({self.extra_repr()})"
        extra = self.extra_repr()
        head = f"{type(self).__name__}(" + (f"\n  {extra}" if extra else "")
        return head + "\n" + "\n".join(lines) + "\n)"


class Sequential(Module):
    """Applies its modules in order; they are registered as '0', '1', ..."""

    def __init__(self, *modules: Module) -> None:
        super().__init__()
        for i, module in enumerate(modules):
            if not isinstance(module, Module):
                raise TypeError(
                    f"Sequential: argument {i} is a {type(module).__name__}, expected a Module"
                )
            setattr(self, str(i), module)

    def __len__(self) -> int:
        return len(self._modules)

    def __getitem__(self, i: int) -> Module:
        return self._submodules()[i]

    def __iter__(self) -> Iterator[Module]:
        return iter(self._submodules())

    def forward(self, x: Any) -> Any:
        """Feed x through each module in turn."""
        for module in self._submodules():
            x = module(x)
        return x

    def append(self, module: Module) -> Sequential:
        """Add `module` at the end, as '<len>'; returns self (torch.nn.Sequential.append)."""
        if not isinstance(module, Module):
            raise TypeError(f"Sequential.append: expected a Module, got {type(module).__name__}")
        setattr(self, str(len(self)), module)
        return self

    def extend(self, modules: Iterable[Module]) -> Sequential:
        """Append each of `modules` in order (all checked first); returns self."""
        items = list(modules)
        for k, module in enumerate(items):
            if not isinstance(module, Module):
                raise TypeError(
                    f"Sequential.extend: item {k} is a {type(module).__name__}, expected a Module"
                )
        for module in items:
            self.append(module)
        return self

    def insert(self, index: int, module: Module) -> Sequential:
        """Insert `module` before position `index` (list.insert's rules); the modules after it
        are renumbered, as in PyTorch. Returns self."""
        if not isinstance(module, Module):
            raise TypeError(f"Sequential.insert: expected a Module, got {type(module).__name__}")
        items = self._submodules()
        items.insert(index, module)
        for name in list(self._modules):
            delattr(self, name)
        for i, item in enumerate(items):
            setattr(self, str(i), item)
        return self


_INTERNAL = frozenset({"_parameters", "_modules", "training", "_owner", "_name", "_state_buffers"})


def _plain(value: Any) -> bool:
    """A value compared by equality in `Module.structure` (immutable and cheap to compare)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    return isinstance(value, tuple) and len(value) <= 16 and all(map(_plain, value))
