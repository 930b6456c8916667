"""ModuleList, ModuleDict, and the Module utilities: to/double/float, apply, requires_grad_."""

from __future__ import annotations

import numpy as np
import pytest

import lucid
import lucid.optim
from lucid import Tensor, nn
from lucid.nn.module import structure_version


class Stack(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)])
        self.heads = nn.ModuleDict({"a": nn.Linear(2, 1), "b": nn.Linear(2, 3)})

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.heads["b"](x)


def test_module_list_registers_children_by_position() -> None:
    m = Stack()
    assert [n for n, _ in m.named_parameters()] == [
        "layers.0.weight",
        "layers.0.bias",
        "layers.2.weight",
        "layers.2.bias",
        "heads.a.weight",
        "heads.a.bias",
        "heads.b.weight",
        "heads.b.bias",
    ]
    assert "layers.1" in dict(m.named_modules())
    assert set(m.state_dict()) == {n for n, _ in m.named_parameters()}
    assert "layers.2.weight" in m.structure()
    assert m.layers[2].path == "layers.2"


def test_module_list_list_api() -> None:
    a, b, c, d = nn.ReLU(), nn.Tanh(), nn.Sigmoid(), nn.Identity()
    ml = nn.ModuleList([a, b])
    ml.append(c)
    assert len(ml) == 3 and list(ml) == [a, b, c]
    assert ml[-1] is c and ml[0] is a
    sliced = ml[1:]
    assert isinstance(sliced, nn.ModuleList) and list(sliced) == [b, c]
    owner = nn.Sequential(nn.Identity(), ml)
    assert owner[1] is ml and ml[1].path == "1.1"
    assert ml[1:][0].path == "1.1"  # a slice keeps the owner links
    ml.insert(1, d)
    assert list(ml) == [a, d, b, c] and [n for n, _ in ml.named_children()] == ["0", "1", "2", "3"]
    ml.extend([nn.ReLU()])
    ml += [nn.Tanh()]
    assert len(ml) == 6
    del ml[0]
    assert ml[0] is d and [n for n, _ in ml.named_children()] == [str(i) for i in range(5)]
    ml[0] = a
    assert ml[0] is a
    with pytest.raises(IndexError, match="index 5 is out of range for length 5"):
        ml[5]
    with pytest.raises(
        TypeError, match="ModuleList: the appended item is a int, expected a Module"
    ):
        ml.append(3)  # type: ignore[arg-type]


def test_module_dict_dict_api() -> None:
    a, b = nn.ReLU(), nn.Tanh()
    md = nn.ModuleDict([("a", a)])
    md["b"] = b
    assert md.keys() == ["a", "b"] and md.values() == [a, b] and md.items() == [("a", a), ("b", b)]
    assert "a" in md and len(md) == 2 and list(md) == ["a", "b"] and md["b"] is b
    md.update({"c": nn.Sigmoid()})
    assert md.pop("a") is a and md.keys() == ["b", "c"]
    del md["b"]
    assert md.keys() == ["c"]
    md.clear()
    assert len(md) == 0 and list(md.named_children()) == []
    with pytest.raises(KeyError):
        md["missing"]
    for bad in ("keys", "x.y", "_parameters", "training"):
        with pytest.raises(KeyError, match="cannot be a key"):
            md[bad] = nn.ReLU()


def test_container_changes_bump_the_structure_version() -> None:
    m = Stack()
    before = structure_version()
    m.layers.append(nn.Tanh())
    assert structure_version() != before
    before = structure_version()
    m.heads["c"] = nn.Identity()
    assert structure_version() != before and "heads.c" in m.structure()


def test_to_double_float_convert_parameters_in_place() -> None:
    m = Stack()
    params = list(m.parameters())
    versions = [p._version for p in params]
    before = structure_version()
    assert m.double() is m
    assert structure_version() != before
    assert all(p is q for p, q in zip(m.parameters(), params))
    assert all(p.dtype == np.float64 and p._version == v + 1 for p, v in zip(params, versions))
    assert m.structure()["layers.0.weight"] == ("parameter", (4, 3), np.dtype(np.float64))
    y = m(Tensor(np.ones((2, 3))))
    assert y.dtype == np.float64
    m.float()
    assert all(p.dtype == np.float32 for p in m.parameters())
    with pytest.raises(TypeError, match="expected a floating dtype"):
        m.to(np.int64)


def test_apply_visits_children_first_then_self() -> None:
    m = Stack()
    seen: list[str] = []
    m.apply(lambda mod: seen.append(mod.path or "<root>"))
    assert seen[-1] == "<root>" and seen.index("layers.0") < seen.index("layers")
    assert len(seen) == len(list(m.modules()))


def test_requires_grad_freezes_parameters_in_eager_training() -> None:
    lucid.random.seed(0)
    m = Stack()
    m.layers[0].requires_grad_(False)
    opt = lucid.optim.SGD(m.parameters(), lr=0.1)  # frozen parameters are accepted
    w0 = m.layers[0].weight.data.copy()
    x = Tensor(np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32))
    m(x).sum().backward()
    assert m.layers[0].weight.grad is None and m.layers[0].bias.grad is None
    assert m.layers[2].weight.grad is not None
    opt.step()
    np.testing.assert_array_equal(m.layers[0].weight.data, w0)
    m.requires_grad_()
    assert all(p.requires_grad for p in m.parameters())


def test_a_container_slot_set_to_none_is_a_clear_error() -> None:
    seq = nn.Sequential(nn.Linear(3, 3), nn.ReLU())
    seq.__setattr__("1", None)  # registered slots keep their name when set to None
    with pytest.raises(TypeError, match=r"Sequential: '1' was set to None, expected a Module"):
        seq(lucid.randn(2, 3))
    with pytest.raises(TypeError, match="'1' was set to None"):
        list(seq)
    md = nn.ModuleDict({"a": nn.ReLU()})
    md.__setattr__("a", None)
    with pytest.raises(TypeError, match=r"ModuleDict: 'a' was set to None, expected a Module"):
        md["a"]


def test_sequential_append_extend_insert_like_torch() -> None:
    lucid.random.seed(0)
    a, b, c = nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)
    seq = nn.Sequential(a)
    before = structure_version()
    assert seq.append(b) is seq and seq.extend([c]) is seq
    assert list(seq) == [a, b, c] and structure_version() != before
    assert [n for n, _ in seq.named_parameters()] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    x = np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_allclose(seq(Tensor(x)).data, c(b(a(Tensor(x)))).data)
    d = nn.Tanh()
    assert seq.insert(1, d) is seq and list(seq) == [a, d, b, c]
    assert [n for n, _ in seq.named_parameters()][-2:] == ["3.weight", "3.bias"]  # renumbered
    assert seq.insert(-1, nn.Identity())[3] is not c and seq[4] is c  # list.insert's rules
    with pytest.raises(TypeError, match="Sequential.append: expected a Module, got int"):
        seq.append(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="item 1 is a str"):
        seq.extend([nn.ReLU(), "relu"])  # type: ignore[list-item]
    assert len(seq) == 5  # a rejected extend adds nothing


def test_a_compiled_sequential_sees_an_appended_layer() -> None:
    """Appending after compiling changes the structure: the next call recompiles, with a
    warning, and agrees with eager."""
    lucid.random.seed(1)
    seq = nn.Sequential(nn.Linear(3, 4), nn.ReLU())
    cm = lucid.compile(seq, backend="interpreter")
    x = np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)
    with lucid.no_grad():
        assert cm(x).shape == (2, 4)
        seq.append(nn.Linear(4, 2))
        with pytest.warns(lucid.errors.RecompileWarning):
            y = cm(x)
        np.testing.assert_allclose(y.data, seq(Tensor(x)).data, rtol=1e-6)
