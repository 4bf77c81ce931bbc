"""Turn a plain CNN into a :class:`~prune_env.nets.gated.GatedNet` by tracing it with ``torch.fx``.

:func:`gate` traces ``model`` on an example input, cuts the graph at every point through which
all data flows (one tensor alive) and reads the pieces in between:

* **conv -> [BN] -> [activation] -> [channel-wise ops]** whose output channels go to exactly one
  conv or linear layer (groups 1, reading those channels) becomes a
  :class:`~prune_env.nets.gated.SequentialStage`;
* **a residual block**, ``act(path(x) + shortcut(x))`` whose path starts ``conv1 -> [BN] -> [act]
  -> conv2``, becomes a :class:`~prune_env.nets.gated.ResidualStage` (or, when more follows
  ``conv2``'s norm or the block ends in another activation, a
  :class:`~prune_env.nets.gated.BlockStage`): only the block's internal channels (``conv1``'s) are
  gated, as in the hand-written ResNets;
* everything before the first and after the last prunable layer becomes the stem and the head,
  unchanged.

Each prunable layer gets its importance predictor ``u_r = f(GAP(F_in))`` and static importance
``u_s`` (paper Sec. 3.1), both starting at 1, so the dense converted network computes what the
original computes. A conv whose channels cannot be gated is left dense, and the reason is
recorded (:func:`explain`): its channels feed a grouped or depthwise conv (tied channels), a
concatenation, a residual block's input (the shortcut carries them), a linear layer that reads
them flattened with their positions, or an op that is not channel-wise. Only one contiguous run of
prunable layers can be stages (a ``GatedNet`` is stem -> stages -> head): the longest is taken.

Refused outright, with a :class:`ConversionError` naming the module and why (nothing is
half-converted): graphs ``torch.fx`` cannot trace, several inputs, attention and matrix products,
functional or transposed convolutions, linear layers on tensors of rank > 2 and conv / linear / BN
modules called more than once; the cost model (:mod:`prune_env.costs`) could not count them as
``torch.utils.flop_counter`` does.
"""

from __future__ import annotations

import copy
import operator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from prune_env.nets.gated import BlockStage, GatedConv, GatedNet, ResidualStage, SequentialStage, Stage


class ConversionError(ValueError):
    """A model that :func:`gate` cannot turn into a gated network; the message names the module and why."""


#: element-wise activations a prunable layer may end with
ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.Hardtanh, nn.ELU, nn.GELU, nn.SiLU, nn.Hardswish, nn.Tanh,
               nn.Sigmoid, nn.Mish)
#: channel-wise modules that keep a zero channel zero: they may follow a gate (its pruned channels stay 0)
CHANNELWISE = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.Hardtanh, nn.ELU, nn.GELU, nn.SiLU, nn.Hardswish, nn.Tanh,
               nn.Mish, nn.Identity, nn.Dropout, nn.Dropout2d, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d,
               nn.AdaptiveMaxPool2d)
_CHANNELWISE_FUNCTIONS = {F.relu, torch.relu, F.relu6, F.dropout, F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d,
                          F.adaptive_max_pool2d, F.gelu, F.silu, torch.tanh, F.hardtanh, F.leaky_relu}
_CHANNELWISE_METHODS = {"relu", "relu_"}
_FLATTEN_FUNCTIONS = {torch.flatten}
_FLATTEN_METHODS = {"flatten", "view", "reshape"}
_RELU_FUNCTIONS = {F.relu, torch.relu}
_ADD_FUNCTIONS = {operator.add, operator.iadd, torch.add}
_CAT_FUNCTIONS = {torch.cat, torch.concat, torch.stack}
#: what the cost model cannot count as torch.utils.flop_counter does
_REFUSED_FUNCTIONS = {
    torch.matmul: "a matrix product (attention?)", operator.matmul: "a matrix product (attention?)",
    torch.bmm: "a batched matrix product (attention?)", torch.mm: "a matrix product", torch.addmm: "a matrix product",
    torch.baddbmm: "a batched matrix product (attention?)", torch.einsum: "an einsum (attention?)",
    F.scaled_dot_product_attention: "attention", F.linear: "a functional linear layer",
    F.conv1d: "a functional convolution", F.conv2d: "a functional convolution", F.conv3d: "a functional convolution",
    F.conv_transpose2d: "a transposed convolution",
}
_REFUSED_METHODS = {"matmul": "a matrix product (attention?)", "bmm": "a batched matrix product (attention?)",
                    "mm": "a matrix product"}
_REFUSED_MODULES = {nn.MultiheadAttention: "attention", nn.Transformer: "attention",
                    nn.TransformerEncoderLayer: "attention", nn.TransformerDecoderLayer: "attention",
                    nn.ConvTranspose1d: "a transposed convolution", nn.ConvTranspose2d: "a transposed convolution",
                    nn.ConvTranspose3d: "a transposed convolution", nn.Conv1d: "a 1-d convolution",
                    nn.Conv3d: "a 3-d convolution", nn.Bilinear: "a bilinear layer", nn.RNNBase: "a recurrent layer"}
#: reasons a conv is left dense that strict conversion refuses (the rest are by design, e.g. a ResNet's stem)
UNSUPPORTED_KINDS = ("tied", "concatenation", "not channel-wise")


@dataclass
class LayerReport:
    """What became of one conv of the model: gated as layer ``layer``, or left dense for ``reason``."""

    module: str
    layer: int | None
    reason: str = ""
    kind: str = ""

    def __str__(self) -> str:
        return f"{self.module}: gated (layer {self.layer})" if self.layer is not None else f"{self.module}: dense ({self.reason})"


@dataclass
class _Unit:
    """A piece of the cut graph: a prunable layer candidate (``stage``) or plain nodes."""

    nodes: list[fx.Node]
    input: fx.Node
    kind: str = "plain"  # "sequential", "residual" or "plain"
    parts: dict = field(default_factory=dict)
    valid: bool = True
    reason: str = ""
    reason_kind: str = ""

    @property
    def output(self) -> fx.Node:
        return self.nodes[-1]


class _Tracer(fx.Tracer):
    """torch.nn modules and parameter-free custom modules are leaves; other modules are traced through."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if isinstance(m, nn.Sequential):
            return False
        if m.__module__.startswith("torch.nn"):
            return True
        return next(m.parameters(), None) is None and next(m.buffers(), None) is None


def _describe(node: fx.Node) -> str:
    if node.op == "call_module":
        return f"module {node.target!r}"
    if node.op == "call_function":
        return f"{getattr(node.target, '__name__', node.target)} at node {node.name!r}"
    return f"{node.op} {node.target!r} at node {node.name!r}"


class _Graph:
    """The traced model: its modules, nodes with shapes, and helpers to read them."""

    def __init__(self, model: nn.Module, example_input: torch.Tensor):
        try:
            graph = _Tracer().trace(model)
        except Exception as exc:  # noqa: BLE001 - tracing fails in many ways; say which model and why
            raise ConversionError(f"torch.fx cannot trace {type(model).__name__}: {type(exc).__name__}: {exc} "
                                  "(data-dependent control flow in forward?)") from None
        self.gm = fx.GraphModule(model, graph)
        inputs = [n for n in graph.nodes if n.op == "placeholder"]
        if len(inputs) != 1:
            raise ConversionError(f"{type(model).__name__}.forward takes {len(inputs)} inputs; "
                                  "only models of one image tensor can be converted")
        self.input = inputs[0]
        try:
            ShapeProp(self.gm).propagate(example_input)
        except Exception as exc:  # noqa: BLE001
            raise ConversionError(f"{type(model).__name__} fails on the example input of shape "
                                  f"{tuple(example_input.shape)}: {type(exc).__name__}: {exc}") from None
        self.nodes = [n for n in graph.nodes if n.op not in ("placeholder", "output", "get_attr")]
        self.position = {n: i for i, n in enumerate(self.nodes)}
        self._refuse_unsupported()

    def module(self, node: fx.Node) -> nn.Module | None:
        return self.gm.get_submodule(node.target) if node.op == "call_module" else None

    def shape(self, node: fx.Node) -> tuple[int, ...] | None:
        meta = node.meta.get("tensor_meta")
        return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None

    def _refuse_unsupported(self) -> None:
        calls: dict[str, int] = {}
        for n in self.nodes:
            m = self.module(n)
            if m is not None:
                for cls, what in _REFUSED_MODULES.items():
                    if isinstance(m, cls):
                        raise ConversionError(f"module {n.target!r} ({type(m).__name__}) is {what}, which cannot be "
                                              "gated or costed as torch.utils.flop_counter does")
                if isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d)):
                    calls[n.target] = calls.get(n.target, 0) + 1
                if isinstance(m, nn.Linear) and len(self.shape(n.args[0]) or ()) != 2:
                    raise ConversionError(f"module {n.target!r} (Linear) is applied to a tensor of shape "
                                          f"{self.shape(n.args[0])}; only (batch, features) inputs are supported")
            elif n.op == "call_function" and n.target in _REFUSED_FUNCTIONS:
                raise ConversionError(f"{_describe(n)} is {_REFUSED_FUNCTIONS[n.target]}, which cannot be gated or "
                                      "costed as torch.utils.flop_counter does")
            elif n.op == "call_method" and n.target in _REFUSED_METHODS:
                raise ConversionError(f"{_describe(n)} is {_REFUSED_METHODS[n.target]}, which cannot be gated or "
                                      "costed as torch.utils.flop_counter does")
        shared = [name for name, count in calls.items() if count > 1]
        if shared:
            raise ConversionError(f"module {shared[0]!r} is called {calls[shared[0]]} times (shared weights): "
                                  "its cost and channels would be counted once")

    # ------------------------------------------------------------------ cutting
    def units(self) -> list[_Unit]:
        """The nodes cut where exactly one value is alive: single-input, single-output pieces."""
        last_use = {n: max((self.position.get(u, len(self.nodes)) for u in n.users), default=-1) for n in self.nodes}
        last_use[self.input] = max((self.position.get(u, len(self.nodes)) for u in self.input.users), default=-1)
        units, start, entry = [], 0, self.input
        alive: set[fx.Node] = {self.input}
        for i, n in enumerate(self.nodes):
            alive.add(n)
            alive = {a for a in alive if last_use[a] > i}
            if alive == {n} or i == len(self.nodes) - 1:
                units.append(_Unit(self.nodes[start:i + 1], entry))
                start, entry = i + 1, n
        return units


def _data_args(node: fx.Node) -> list[fx.Node]:
    return [a for a in node.all_input_nodes if a.op != "get_attr"]


def _is_relu(node: fx.Node) -> bool:
    return ((node.op == "call_function" and node.target in _RELU_FUNCTIONS)
            or (node.op == "call_method" and node.target in _CHANNELWISE_METHODS))


def _activation(g: _Graph, node: fx.Node) -> nn.Module | None:
    """The activation module of an activation node, or None when it is not one."""
    m = g.module(node)
    if m is not None:
        return m if isinstance(m, ACTIVATIONS) else None
    return nn.ReLU(inplace=bool(node.kwargs.get("inplace", False))) if _is_relu(node) else None


def _as_module(g: _Graph, node: fx.Node) -> nn.Module | None:
    """``node`` as a module of one input: a called module, a flatten or a ReLU; None otherwise."""
    if node.op == "call_module":
        return g.module(node)
    if _is_relu(node):
        return _activation(g, node)
    if node.op == "call_function" and node.target in _FLATTEN_FUNCTIONS and len(_data_args(node)) == 1:
        args = list(node.args[1:]) + [node.kwargs.get(k) for k in ("start_dim", "end_dim") if k in node.kwargs]
        return nn.Flatten(*(args or [0]))
    return None


def _module_of(g: _Graph, nodes: list[fx.Node], entry: fx.Node, *, single: bool = True) -> nn.Module:
    """One module computing ``nodes`` from ``entry``: Identity, the module itself, a Sequential, or a GraphModule."""
    if not nodes:
        return nn.Identity()
    modules, previous = [], entry
    for n in nodes:
        m = _as_module(g, n)
        if m is None or _data_args(n) != [previous] or any(a is previous for a in n.args[1:]):
            break
        modules.append(m)
        previous = n
    else:
        return modules[0] if single and len(modules) == 1 else nn.Sequential(*modules)
    graph = fx.Graph()
    env = {entry: graph.placeholder("x")}

    def arg(a: fx.Node) -> fx.Node:
        if a not in env:  # a parameter or buffer read with get_attr
            env[a] = graph.node_copy(a, arg)
        return env[a]

    for n in nodes:
        env[n] = graph.node_copy(n, arg)
    graph.output(env[nodes[-1]])
    return fx.GraphModule(g.gm, graph)


def _chain_back(node: fx.Node, entry: fx.Node, inside: set[fx.Node]) -> list[fx.Node] | None:
    """The nodes from ``entry`` to ``node`` when they form a chain of one-input nodes, else None."""
    chain = []
    while node is not entry:
        args = _data_args(node)
        if node not in inside or len(args) != 1 or len(node.users) != 1:
            return None
        chain.append(node)
        node = args[0]
    return chain[::-1]


# ---------------------------------------------------------------------------------- matching
def _conv_bn_act(g: _Graph, nodes: list[fx.Node]) -> tuple[dict, int] | None:
    """``conv, bn, act`` at the start of a chain of nodes, and how many nodes they take."""
    if not nodes or not isinstance(g.module(nodes[0]), nn.Conv2d):
        return None
    parts, i = {"conv": nodes[0], "bn": None, "act": None}, 1
    if i < len(nodes) and isinstance(g.module(nodes[i]), nn.BatchNorm2d):
        parts["bn"], i = nodes[i], i + 1
    if i < len(nodes) and _activation(g, nodes[i]) is not None:
        parts["act"], i = nodes[i], i + 1
    return parts, i


def _tied(g: _Graph, conv_node: fx.Node) -> str:
    conv = g.module(conv_node)
    return (f"{'depthwise' if conv.groups == conv.in_channels else 'grouped'} conv {conv_node.target!r} "
            f"(groups={conv.groups}) ties its output channels to its input channels")


def _match_units(g: _Graph, units: list[_Unit]) -> list[_Unit]:
    """Prunable-layer candidates merged from the cut pieces (plain pieces stay as they are)."""
    out, i = [], 0
    while i < len(units):
        unit = units[i]
        residual = _match_residual(g, unit, units[i + 1] if i + 1 < len(units) else None)
        if residual is not None:
            out.append(residual)
            i += 2 if residual.parts.get("out_act_unit") else 1
            continue
        # a sequential layer: single-node pieces conv, [bn], [act], [channel-wise ops...]
        singles = []
        for u in units[i:]:
            if len(u.nodes) != 1:
                break
            singles.append(u.nodes[0])
        found = _conv_bn_act(g, singles)
        if found is None:
            out.append(unit)
            i += 1
            continue
        parts, taken = found
        if g.module(parts["conv"]).groups != 1:
            out.append(_Unit(singles[:taken], unit.input, "plain", reason=_tied(g, parts["conv"]), reason_kind="tied"))
            out[-1].parts = parts
            i += taken
            continue
        while taken < len(singles) and isinstance(g.module(singles[taken]), CHANNELWISE):
            taken += 1
        parts["post"] = singles[1 + (parts["bn"] is not None) + (parts["act"] is not None):taken]
        out.append(_Unit(singles[:taken], unit.input, "sequential", parts))
        i += taken
    return out


def _match_residual(g: _Graph, unit: _Unit, following: _Unit | None) -> _Unit | None:
    """``[act](path(x) + shortcut(x))`` with ``path = conv1 -> [bn1] -> [act1] -> conv2 -> [bn2] -> rest``."""
    add = unit.output
    if not ((add.op == "call_function" and add.target in _ADD_FUNCTIONS)
            or (add.op == "call_method" and add.target in ("add", "add_"))):
        return None
    args = _data_args(add)
    if len(args) != 2 or add.kwargs.get("alpha", 1) != 1:
        return None
    inside = set(unit.nodes)
    chains = [_chain_back(a, unit.input, inside) for a in args]
    if any(c is None for c in chains):
        return None
    main, shortcut = max(chains, key=len), min(chains, key=len)
    head = _conv_bn_act(g, main)
    if head is None:
        return None
    parts, taken = head
    second = _conv_bn_act(g, main[taken:])
    if second is None:
        return None
    conv2 = main[taken]
    if g.module(parts["conv"]).groups != 1:
        return _Unit(unit.nodes, unit.input, "plain", reason=_tied(g, parts["conv"]), reason_kind="tied", parts=parts)
    if g.module(conv2).groups != 1:
        return _Unit(unit.nodes, unit.input, "plain", parts=parts, reason_kind="tied",
                     reason=f"its channels feed {_tied(g, conv2)}")
    bn2 = main[taken + 1] if second[0]["bn"] is not None else None
    rest = main[taken + 1 + (bn2 is not None):]
    if all(isinstance(g.module(n), nn.Identity) for n in rest):
        rest = []
    parts.update(conv2=conv2, bn2=bn2, rest=rest, shortcut=shortcut, add=add, out_act=None, out_act_unit=None)
    nodes = list(unit.nodes)
    if following is not None and len(following.nodes) == 1 and _activation(g, following.nodes[0]) is not None:
        parts["out_act"] = following.nodes[0]
        parts["out_act_unit"] = following
        nodes.append(following.nodes[0])
    return _Unit(nodes, unit.input, "residual", parts)


def _consumer(g: _Graph, node: fx.Node, channels: int) -> tuple[fx.Node | None, str, str]:
    """The one conv / linear layer reading the channels ``node`` outputs, or None with the reason and its kind."""
    while True:
        users = [u for u in node.users if not (u.op == "call_method" and u.target == "size")]
        if len(users) != 1:
            names = ", ".join(_describe(u) for u in users) or "the output"
            return None, f"its channels go to {len(users)} places ({names}): a branch or a residual block's input", "branch"
        user = users[0]
        if _data_args(user)[:1] != [node]:
            return None, f"its channels reach {_describe(user)} as a second operand", "not channel-wise"
        m = g.module(user)
        if isinstance(m, nn.Conv2d):
            if m.groups != 1:
                return None, f"its channels feed {_tied(g, user)}", "tied"
            return user, "", ""
        if isinstance(m, nn.Linear):
            if m.in_features != channels:
                return None, (f"Linear {user.target!r} reads them flattened with their positions "
                              f"(in_features={m.in_features}, channels={channels})"), "flatten"
            return user, "", ""
        if user.op == "call_function" and user.target in _CAT_FUNCTIONS:
            return None, f"its channels are concatenated ({_describe(user)})", "concatenation"
        passes = (isinstance(m, (*CHANNELWISE, nn.Flatten))
                  or (user.op == "call_function" and user.target in _CHANNELWISE_FUNCTIONS | _FLATTEN_FUNCTIONS)
                  or (user.op == "call_method" and user.target in _CHANNELWISE_METHODS | _FLATTEN_METHODS))
        if not passes:
            return None, f"its channels reach {_describe(user)}, which is not channel-wise", "not channel-wise"
        node = user


def _validate(g: _Graph, units: list[_Unit]) -> None:
    for u in units:
        if u.kind == "sequential":
            consumer, reason, kind = _consumer(g, u.output, g.module(u.parts["conv"]).out_channels)
            u.valid, u.reason, u.reason_kind = consumer is not None, reason, kind
            u.parts["consumer"] = consumer


def _longest_run(units: list[_Unit]) -> tuple[int, int]:
    best, start = (0, 0), None
    for i, u in enumerate([*units, _Unit([], units[0].input)]):
        ok = u.kind != "plain" and u.valid
        if ok and start is None:
            start = i
        if not ok and start is not None:
            if i - start > best[1] - best[0]:
                best = (start, i)
            start = None
    return best


# ---------------------------------------------------------------------------------- building
def _stage(g: _Graph, unit: _Unit) -> Stage:
    p = unit.parts
    act = _activation(g, p["act"]) if p["act"] is not None else nn.Identity()
    bn = g.module(p["bn"]) if p["bn"] is not None else None
    gated = GatedConv(g.module(p["conv"]), bn, act)
    if unit.kind == "sequential":
        post = _module_of(g, p["post"], p["act"] or p["bn"] or p["conv"]) if p["post"] else None
        return SequentialStage(gated, post)
    conv2 = g.module(p["conv2"])
    bn2 = g.module(p["bn2"]) if p["bn2"] is not None else nn.Identity()
    shortcut = _module_of(g, p["shortcut"], unit.input) if p["shortcut"] else None
    out_act = _activation(g, p["out_act"]) if p["out_act"] is not None else None
    if not p["rest"] and isinstance(out_act, nn.ReLU):
        return ResidualStage(gated, conv2, bn2, shortcut)
    rest = _module_of(g, p["rest"], p["bn2"] or p["conv2"]) if p["rest"] else None
    return BlockStage(gated, conv2, bn2, shortcut, rest=rest, out_act=out_act)


def _reports(g: _Graph, units: list[_Unit], run: tuple[int, int]) -> list[LayerReport]:
    """One report per Conv2d of the model, in forward order."""
    gated = {u.parts["conv"]: t for t, u in enumerate(units[run[0]:run[1]])}
    candidates = {u.parts["conv"]: u for u in units if u.parts.get("conv") is not None}
    second = {u.parts["conv2"] for u in units if u.parts.get("conv2") is not None}
    reports = []
    for n in g.nodes:
        m = g.module(n)
        if not isinstance(m, nn.Conv2d):
            continue
        if n in gated:
            reports.append(LayerReport(n.target, gated[n]))
        elif n in candidates and candidates[n].reason:
            reports.append(LayerReport(n.target, None, candidates[n].reason, candidates[n].reason_kind))
        elif n in candidates:
            reports.append(LayerReport(n.target, None, "outside the longest run of prunable layers "
                                                        "(a gated net is stem -> layers -> head)", "outside"))
        elif m.groups != 1:
            reports.append(LayerReport(n.target, None, _tied(g, n), "tied"))
        elif n in second:
            reports.append(LayerReport(n.target, None, "a residual block's second conv: reads the gated channels, "
                                                        "its own are added to the shortcut", "residual"))
        else:
            end = n
            while len(end.users) == 1 and (isinstance(g.module(next(iter(end.users))), nn.BatchNorm2d)
                                           or _activation(g, next(iter(end.users))) is not None):
                end = next(iter(end.users))
            _, reason, kind = _consumer(g, end, m.out_channels)
            if not reason:
                reason, kind = "its input also feeds another branch (not a chain or a residual block)", "structure"
            reports.append(LayerReport(n.target, None, reason, kind))
    return reports


def _convert(model: nn.Module, example_input: torch.Tensor) -> tuple[GatedNet | None, list[LayerReport]]:
    model = copy.deepcopy(model)
    g = _Graph(model, example_input)
    units = _match_units(g, g.units())
    _validate(g, units)
    run = _longest_run(units)
    reports = _reports(g, units, run)
    if run[1] == run[0]:
        return None, reports
    stem_units, stage_units, head_units = units[:run[0]], units[run[0]:run[1]], units[run[1]:]
    stem = _module_of(g, [n for u in stem_units for n in u.nodes], g.input, single=False)
    last = stage_units[-1]
    if last.kind == "sequential":  # the last layer's pooling and what follows it open the head
        post = last.parts["post"]
        split = next((i for i, n in enumerate(post) if g.shape(n) != g.shape(_data_args(n)[0])), len(post))
        moved = post[split:]
        if moved:
            last.nodes = last.nodes[:len(last.nodes) - len(moved)]
            last.parts["post"] = post[:split]
            head_units = [_Unit(moved, last.output), *head_units]
    head = _module_of(g, [n for u in head_units for n in u.nodes], last.output, single=False)
    stages = [_stage(g, u) for u in stage_units]
    net = GatedNet(stem if stem_units else nn.Identity(), stages, head)
    for t in range(net.num_layers):  # the stages' declarations must agree with the traced graph
        consumers = net.channel_consumers(t)
        u = stage_units[t]
        if u.kind == "sequential" and consumers[0][1] is not g.module(u.parts["consumer"]):
            raise ConversionError(f"internal: layer {t} ({u.parts['conv'].target!r}) is read by "
                                  f"{u.parts['consumer'].target!r} in the model but by {consumers[0][0]!r} in the gated net")
    return net, reports


def explain(model: nn.Module, example_input: torch.Tensor) -> list[LayerReport]:
    """What :func:`gate` would do with every conv of ``model``: gated as which layer, or left dense and why."""
    return _convert(model, example_input)[1]


def gate(model: nn.Module, example_input: torch.Tensor, *, strict: bool = False, config: dict | None = None) -> GatedNet:
    """A :class:`GatedNet` computing what ``model`` computes, with its gateable convs as prunable layers.

    Args:
        model: a CNN taking one image batch ``(B, C, H, W)`` (it is copied; the copy's weights are used).
        example_input: a batch of the images it runs on (its shape fixes the traced shapes).
        strict: refuse the model when a conv is left dense because of tied channels (grouped /
            depthwise convs), a concatenation or an op that is not channel-wise.
        config: stored as the network's ``config`` (what rebuilds it: see :mod:`prune_env.nets.models`).

    Raises:
        ConversionError: the model cannot be traced or costed (see the module docstring), no conv
            can be gated, or (``strict``) some conv cannot; the message names the modules and why.
    """
    if not isinstance(model, nn.Module):
        raise ConversionError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(example_input, torch.Tensor) or example_input.dim() != 4:
        raise ConversionError(f"example_input must be an image batch of shape (B, C, H, W), got "
                              f"{getattr(example_input, 'shape', type(example_input).__name__)}")
    was_training = model.training
    with torch.no_grad():
        net, reports = _convert(model.eval(), example_input)
    model.train(was_training)
    dense = [r for r in reports if r.layer is None]
    if net is None:
        lines = "; ".join(str(r) for r in dense) or "the model has no Conv2d"
        raise ConversionError(f"{type(model).__name__}: no conv can be gated: {lines}")
    refused = [r for r in dense if r.kind in UNSUPPORTED_KINDS]
    if strict and refused:
        raise ConversionError(f"{type(model).__name__}: strict conversion refused: " + "; ".join(str(r) for r in refused))
    net.config = dict(config or {})
    net.conversion_report = reports
    return net.train(was_training)


def layer_reports(net: Any) -> list[LayerReport]:
    """The reports :func:`gate` left on a converted network (empty for hand-written ones)."""
    return list(getattr(net, "conversion_report", []))
