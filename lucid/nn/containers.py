"""ModuleList and ModuleDict: containers that register their modules as children.

Both keep their modules as ordinary registered attributes (`Module.__setattr__`), so
parameters, `state_dict`, `named_modules` and `Module.structure` (the guard of compiled models)
see them, and every change bumps the structure version like any attribute assignment.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Self

from lucid.nn.module import Module


def _check(owner: str, module: Any, where: str) -> Module:
    if not isinstance(module, Module):
        raise TypeError(f"{owner}: {where} is a {type(module).__name__}, expected a Module")
    return module


class ModuleList(Module):
    """A list of modules registered as '0', '1', ...; it has no forward of its own.

    Invariant: the registered names are exactly str(0) .. str(len - 1), in list order.
    """

    def __init__(self, modules: Iterable[Module] | None = None) -> None:
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def _items(self) -> list[Module]:
        return self._submodules()

    def _reset(self, items: list[Module]) -> None:
        """Re-register `items` as '0'..'n-1' (insertion and deletion renumber, as in PyTorch)."""
        for name in list(self._modules):
            delattr(self, name)
        for i, module in enumerate(items):
            setattr(self, str(i), module)

    def _index(self, i: int) -> int:
        n = len(self._modules)
        if not -n <= i < n:
            raise IndexError(f"ModuleList: index {i} is out of range for length {n}")
        return i % n

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._items())

    def __getitem__(self, i: int | slice) -> Any:
        if isinstance(i, slice):
            return self._view(self._items()[i])
        return self._items()[self._index(i)]

    @staticmethod
    def _view(items: list[Module]) -> ModuleList:
        """A ModuleList of `items` that leaves their owner links alone: a slice must not make
        the modules' paths (and error messages) point into a temporary list."""
        out = ModuleList()
        for k, module in enumerate(items):
            out._modules[str(k)] = module
            object.__setattr__(out, str(k), module)
        return out

    def __setitem__(self, i: int, module: Module) -> None:
        setattr(self, str(self._index(i)), _check("ModuleList", module, "the new item"))

    def __delitem__(self, i: int | slice) -> None:
        items = self._items()
        del items[i if isinstance(i, slice) else self._index(i)]
        self._reset(items)

    def __iadd__(self, modules: Iterable[Module]) -> Self:
        self.extend(modules)
        return self

    def append(self, module: Module) -> ModuleList:
        """Add `module` at the end; returns self."""
        setattr(self, str(len(self)), _check("ModuleList", module, "the appended item"))
        return self

    def extend(self, modules: Iterable[Module]) -> ModuleList:
        """Append each of `modules` in order; returns self."""
        if isinstance(modules, Module) and not isinstance(modules, ModuleList):
            raise TypeError("ModuleList.extend: expected an iterable of Modules, got a Module")
        for k, module in enumerate(list(modules)):
            self.append(_check("ModuleList", module, f"item {k}"))
        return self

    def insert(self, index: int, module: Module) -> None:
        """Insert `module` before position `index` (list.insert's rules)."""
        items = self._items()
        items.insert(index, _check("ModuleList", module, "the inserted item"))
        self._reset(items)


class ModuleDict(Module):
    """A dict of modules registered under their keys, in insertion order; no forward.

    Keys must be strings that are not attributes of ModuleDict itself (so `self.keys` stays
    the method) and contain no '.' (a dot would be read as a path separator).
    """

    def __init__(self, modules: Mapping[str, Module] | Iterable[tuple[str, Module]] | None = None):
        super().__init__()
        if modules is not None:
            self.update(modules)

    def _key(self, key: Any) -> str:
        if not isinstance(key, str):
            raise TypeError(f"ModuleDict: keys must be strings, got {type(key).__name__}")
        if not key or "." in key or key[0] == "_" or key == "training" or hasattr(ModuleDict, key):
            raise KeyError(f"ModuleDict: {key!r} cannot be a key (empty, dotted or reserved)")
        return key

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._modules))

    def __contains__(self, key: object) -> bool:
        return key in self._modules

    def __getitem__(self, key: str) -> Module:
        if key not in self._modules:
            raise KeyError(key)
        return self._submodule(key)

    def __setitem__(self, key: str, module: Module) -> None:
        setattr(self, self._key(key), _check("ModuleDict", module, f"the value for {key!r}"))

    def __delitem__(self, key: str) -> None:
        if key not in self._modules:
            raise KeyError(key)
        delattr(self, key)

    def keys(self) -> list[str]:
        """The keys, in insertion order."""
        return list(self._modules)

    def values(self) -> list[Module]:
        """The modules, in insertion order."""
        return self._submodules()

    def items(self) -> list[tuple[str, Module]]:
        """(key, module) pairs, in insertion order."""
        return list(zip(self._modules, self._submodules(), strict=True))

    def pop(self, key: str) -> Module:
        """Remove `key` and return its module."""
        module = self[key]
        del self[key]
        return module

    def clear(self) -> None:
        """Remove every module."""
        for key in list(self._modules):
            delattr(self, key)

    def update(self, modules: Mapping[str, Module] | Iterable[tuple[str, Module]]) -> None:
        """Add or replace modules from a mapping or from (key, module) pairs."""
        pairs = modules.items() if isinstance(modules, Mapping) else modules
        for key, module in list(pairs):
            self[key] = module
