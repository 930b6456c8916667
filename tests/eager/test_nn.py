"""Module registration and traversal, state_dict, train/eval, printing, layers and losses."""

from __future__ import annotations

import numpy as np
import pytest

import lucid
import lucid.nn.functional as F
from lucid import Tensor, nn


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 4)
        self.act = nn.HardSwish()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.fc(x))


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block = Block()
        self.drop = nn.Dropout(0.2)
        self.head = nn.Linear(4, 2, bias=False)
        self.scale = 2.0  # plain attribute: not registered

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.drop(self.block(x)))


def test_registration_and_dotted_names() -> None:
    net = Net()
    assert [n for n, _ in net.named_parameters()] == [
        "block.fc.weight",
        "block.fc.bias",
        "head.weight",
    ]
    assert [n for n, _ in net.named_modules()] == [
        "",
        "block",
        "block.fc",
        "block.act",
        "drop",
        "head",
    ]
    assert [n for n, _ in net.named_children()] == ["block", "drop", "head"]
    assert next(iter(net.children())) is net.block
    assert len(list(net.modules())) == 6 and len(list(net.parameters())) == 3
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in net.parameters())
    assert net.head.bias is None
    assert net.block.fc.path == "block.fc" and net.path == ""


def test_reassignment_and_deletion_update_the_registry() -> None:
    net = Net()
    net.head = nn.Identity()
    assert [n for n, _ in net.named_parameters()] == ["block.fc.weight", "block.fc.bias"]
    del net.block
    assert list(net.named_parameters()) == []
    net.extra = nn.Parameter(np.zeros(2))
    assert [n for n, _ in net.named_parameters()] == ["extra"]
    net.extra = 3  # a non-parameter value unregisters the name
    assert list(net.parameters()) == []


def test_cached_walks_reuse_one_walk_until_a_module_attribute_changes() -> None:
    from lucid.nn.module import cached_walks, module_walk

    net = Net()
    assert module_walk(net) is not module_walk(net)  # outside the block: a fresh walk each time
    with cached_walks():
        walk = module_walk(net)
        assert module_walk(net) is walk
        assert walk == tuple(net.named_modules())
        assert [n for n, _ in net.named_parameters()] == [
            "block.fc.weight",
            "block.fc.bias",
            "head.weight",
        ]
        net.head = nn.Linear(4, 2)  # any assignment invalidates: the new module is walked
        assert module_walk(net) is not walk
        assert [n for n, _ in net.named_parameters()][-2:] == ["head.weight", "head.bias"]
        del net.block
        assert [n for n, _ in net.named_modules()] == [n for n, _ in module_walk(net)]
        assert [n for n, _ in module_walk(net)] == ["", "drop", "head"]
        other = Net()  # each root has its own walk
        assert [n for n, _ in module_walk(other)][:2] == ["", "block"]
        with cached_walks():  # nested: the outer block's walks serve
            assert module_walk(other) is module_walk(other)
    assert module_walk(other) is not module_walk(other)


def test_shared_parameters_and_modules_are_listed_once() -> None:
    lin = nn.Linear(2, 2)
    seq = nn.Sequential(lin, nn.ReLU(), lin)
    assert len(list(seq.parameters())) == 2
    assert [n for n, _ in seq.named_parameters()] == ["0.weight", "0.bias"]


def test_assigning_before_super_init_is_a_clear_error() -> None:
    class Bad(nn.Module):
        def __init__(self) -> None:
            self.fc = nn.Linear(1, 1)

    with pytest.raises(AttributeError, match=r"call super\(\).__init__\(\) first in Bad.__init__"):
        Bad()


def test_forward_must_be_defined() -> None:
    with pytest.raises(NotImplementedError, match="Module does not define forward"):
        nn.Module()(Tensor([1.0]))


def test_state_dict_round_trip_keeps_parameter_arrays_and_bumps_versions() -> None:
    lucid.random.seed(1)
    a, b = Net(), Net()
    x = lucid.randn(5, 3)
    a.eval(), b.eval()
    assert not np.allclose(a(x).data, b(x).data)
    arrays = [p.data for p in b.parameters()]
    versions = [p._version for p in b.parameters()]
    state = a.state_dict()
    assert list(state) == ["block.fc.weight", "block.fc.bias", "head.weight"]
    result = b.load_state_dict(state)
    assert result == nn.LoadResult([], [])
    np.testing.assert_array_equal(a(x).data, b(x).data)
    assert all(p.data is arr for p, arr in zip(b.parameters(), arrays))  # updated in place
    assert [p._version for p in b.parameters()] == [v + 1 for v in versions]
    state["head.weight"][:] = 0.0  # state_dict holds copies
    assert np.any(a.head.weight.data != 0.0)


def test_load_state_dict_names_missing_and_unexpected_keys() -> None:
    net = Net()
    state = net.state_dict()
    del state["block.fc.bias"]
    state["head.bias"] = np.zeros(2)
    with pytest.raises(ValueError, match="missing keys: block.fc.bias; unexpected keys: head.bias"):
        net.load_state_dict(state)
    result = net.load_state_dict(state, strict=False)
    assert result.missing_keys == ["block.fc.bias"] and result.unexpected_keys == ["head.bias"]


def test_load_state_dict_shape_mismatch_names_key_and_both_shapes_and_changes_nothing() -> None:
    net = Net()
    before = net.block.fc.bias.data.copy()
    state = net.state_dict()
    state["block.fc.bias"] = np.ones(4)
    state["head.weight"] = np.zeros((3, 4))
    with pytest.raises(
        ValueError, match=r"shape mismatch for head.weight: state has \(3, 4\), model has \(2, 4\)"
    ):
        net.load_state_dict(state)
    np.testing.assert_array_equal(net.block.fc.bias.data, before)


def test_train_eval_propagate_and_dropout_follows() -> None:
    net = Net()
    assert net.training and net.drop.training
    assert net.eval() is net and not net.drop.training and not net.block.act.training
    x = Tensor(np.ones((4, 4), dtype=np.float32))
    assert net.drop(x) is x
    net.train()
    lucid.random.seed(3)
    y = net.drop(Tensor(np.ones((200, 50), dtype=np.float32)))
    kept = (y.data != 0).mean()
    assert 0.75 < kept < 0.85 and set(np.unique(y.data)) == {0.0, np.float32(1 / 0.8)}


def test_dropout_is_reproducible_under_seed() -> None:
    x = Tensor(np.ones((10, 10), dtype=np.float32))
    lucid.random.seed(5)
    a = F.dropout(x, 0.5).data
    lucid.random.seed(5)
    np.testing.assert_array_equal(a, F.dropout(x, 0.5).data)
    with pytest.raises(ValueError, match=r"p must lie in \[0, 1\], got 1.5"):
        nn.Dropout(1.5)


def test_nested_repr() -> None:
    assert repr(Net()) == (
        "Net(\n"
        "  (block): Block(\n"
        "    (fc): Linear(in_features=3, out_features=4, bias=True)\n"
        "    (act): HardSwish()\n"
        "  )\n"
        "  (drop): Dropout(p=0.2)\n"
        "  (head): Linear(in_features=4, out_features=2, bias=False)\n"
        ")"
    )


def test_linear_init_shapes_bounds_dtype_and_seed() -> None:
    lucid.random.seed(11)
    lin = nn.Linear(16, 8)
    assert lin.weight.shape == (8, 16) and lin.bias.shape == (8,)
    assert lin.weight.dtype == np.float32
    assert np.abs(lin.weight.data).max() <= 0.25 and np.abs(lin.bias.data).max() <= 0.25
    assert np.abs(lin.weight.data).max() > 0.2  # spread over the range, not a tiny init
    lucid.random.seed(11)
    np.testing.assert_array_equal(nn.Linear(16, 8).weight.data, lin.weight.data)
    assert nn.Linear(2, 3, dtype=np.float64).weight.dtype == np.float64


def test_linear_shape_error_names_module_path_and_shapes() -> None:
    net = Net()
    with pytest.raises(
        ValueError,
        match=r"Linear\(in_features=3, out_features=4, bias=True\) at 'block.fc': "
        r"expected input of shape \[\.\.\., 3\], got \(2, 5\)",
    ):
        net(lucid.ones(2, 5))


def test_linear_computes_x_wT_plus_b() -> None:
    lin = nn.Linear(3, 2, dtype=np.float64)
    x = np.arange(6.0).reshape(2, 3)
    np.testing.assert_allclose(lin(Tensor(x)).data, x @ lin.weight.data.T + lin.bias.data)


def test_flatten_and_sequential() -> None:
    seq = nn.Sequential(nn.Flatten(), nn.Linear(12, 2))
    assert seq(lucid.ones(5, 3, 4)).shape == (5, 2)
    assert (
        len(seq) == 2 and isinstance(seq[1], nn.Linear) and next(type(m) for m in seq) is nn.Flatten
    )
    with pytest.raises(TypeError, match="Sequential: argument 0 is a int, expected a Module"):
        nn.Sequential(3)


def test_flatten_start_and_end_dims_as_torch() -> None:
    x = np.arange(2 * 3 * 4 * 5.0).reshape(2, 3, 4, 5)
    for start, end, shape in [(1, -1, (2, 60)), (2, 3, (2, 3, 20)), (1, 2, (2, 12, 5)),
                              (0, 1, (6, 4, 5)), (-2, -1, (2, 3, 20)), (3, 3, (2, 3, 4, 5))]:  # fmt: skip
        flat = nn.Flatten(start, end)
        got = flat(Tensor(x)).data
        assert got.shape == shape and np.array_equal(got.ravel(), x.ravel())
        assert f"start_dim={start}, end_dim={end}" in repr(flat)
    with pytest.raises(ValueError, match="start_dim 3 comes after end_dim 1"):
        nn.Flatten(3, 1)(Tensor(x))
    with pytest.raises(ValueError, match="batch axis"):
        nn.Flatten()(Tensor(np.zeros(3)))


@pytest.mark.needs_cc
def test_flatten_inner_dims_compiles_with_a_dynamic_batch() -> None:
    model = nn.Sequential(nn.Flatten(2, 3), nn.Linear(20, 2), nn.Flatten())
    compiled = lucid.compile(model, dynamic_batch=True)
    for n in (1, 3):
        x = Tensor(np.random.default_rng(n).standard_normal((n, 3, 4, 5)).astype(np.float32))
        assert compiled(x).shape == (n, 6)
        np.testing.assert_allclose(compiled(x).data, model(x).data, rtol=1e-6, atol=1e-6)


def test_losses_values() -> None:
    p = Tensor(np.array([[1.0, 2.0], [3.0, 5.0]]))
    t = Tensor(np.array([[1.0, 0.0], [0.0, 1.0]]))
    assert nn.MSELoss()(p, t).data == pytest.approx((0 + 4 + 9 + 16) / 4)
    assert nn.MSELoss(reduction="sum")(p, t).data == pytest.approx(29.0)
    z = np.array([[2.0, 1.0, 0.1], [0.5, 2.5, 0.3]])
    target = np.array([0, 1])
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    expected = -(logp[0, 0] + logp[1, 1]) / 2
    assert nn.CrossEntropyLoss()(Tensor(z), target).data == pytest.approx(expected)
    with pytest.raises(
        ValueError, match=r"prediction has shape \(2, 2\) but target has shape \(2,\)"
    ):
        F.mse_loss(p, Tensor(np.ones(2)))
    with pytest.raises(
        TypeError, match="target must hold integer class indices, got dtype float32"
    ):
        F.cross_entropy(Tensor(z), Tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="reduction must be 'mean', 'sum' or 'none', got 'max'"):
        F.mse_loss(p, t, reduction="max")
