"""The gated CNN: prunable layers with learnable channel importance, run whole or one layer at a time.

Data path (paper Sec. 3.1-3.2, Fig. 1)::

    image -> stem -> [stage 0] -> [stage 1] -> ... -> [stage L-1] -> head -> logits
                         |
          F_in --GAP--> pooled --f--> u_r ;  u_s (learned) ;  d_r, d_s from the agents
                         |
          F_out = ReLU(BN(conv(F_in)));  M = g(u_r, u_s, d_r, d_s)  (Eq. 1, 3-5)
          F_hat = F_out * (1 - M) * (u_r * u_s)                     (Eq. 2, 6)

Every stage holds exactly one prunable layer (:class:`GatedConv`). The pooled input of a
stage is what the runtime agent observes before choosing that layer's keep ratio, so the
network exposes a *stepping* API (:meth:`GatedNet.begin`, :meth:`GatedNet.step`) on which the
environments are built; the one-shot :meth:`GatedNet.forward` runs the very same steps.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch
from torch import Tensor, nn

from prune_env.nets.masks import check_multiple, check_order, permanent_mask, runtime_ranking, tradeoff_mask
from prune_env.nets.slicing import first_weighted_module, input_width

KeepRatio = float | Tensor  # a scalar or one value per sample, shape (B,)


def global_pool(x: Tensor) -> Tensor:
    """Global average pooling of ``(B, C, H, W)`` features to ``(B, C)``."""
    return x.mean(dim=(2, 3))


class GatedConv(nn.Module):
    """A prunable layer: conv -> BN -> ReLU, gated by runtime and static importance.

    Holds the importance predictor ``f`` (one linear layer on the pooled input, no activation;
    paper Sec. 3.1.1) and the static importance ``u_s`` (Sec. 3.1.2). The predictor starts at
    ``u_r = 1`` (zero weight, unit bias) and ``u_s`` at 1, so fitting the gates to a pretrained
    backbone starts from the backbone's own function.
    """

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d | None = None, act: nn.Module | None = None):
        super().__init__()
        self.conv = conv
        self.bn = bn if bn is not None else nn.Identity()
        self.act = act if act is not None else nn.ReLU(inplace=True)
        self.predictor = nn.Linear(conv.in_channels, conv.out_channels)
        nn.init.zeros_(self.predictor.weight)
        nn.init.ones_(self.predictor.bias)
        self.static_importance = nn.Parameter(torch.ones(conv.out_channels))

    @property
    def in_channels(self) -> int:
        return self.conv.in_channels

    @property
    def out_channels(self) -> int:
        return self.conv.out_channels

    @property
    def channels(self) -> int:
        """``C``: the output channels the masks rank."""
        return self.conv.out_channels

    def features(self, x: Tensor) -> Tensor:
        """``F_out``: the dense layer output before gating."""
        return self.act(self.bn(self.conv(x)))

    def runtime_importance(self, pooled: Tensor) -> Tensor:
        """``u_r = f(GAP(F_in))``, shape ``(B, C_out)``."""
        return self.predictor(pooled)

    def forward(self, x: Tensor, pooled: Tensor, d_r: KeepRatio, d_s: KeepRatio, cfg: "GateConfig") -> tuple[Tensor, Tensor]:
        """Gated output ``F_hat`` (Eq. 2) and the ``(B, C_out)`` pruning mask (True = pruned)."""
        out = self.features(x)
        if not cfg.gating:
            return out, torch.zeros(out.shape[:2], dtype=torch.bool, device=out.device)
        u_r = self.runtime_importance(pooled)
        u_s = torch.ones_like(self.static_importance) if cfg.hold_static else self.static_importance
        ranked = runtime_ranking(u_r.detach(), u_s.detach(), cfg.runtime_order)
        mask = tradeoff_mask(ranked, u_s.detach(), d_r, d_s, cfg.tradeoff_rate, cfg.count_multiple)
        scale = (u_r * u_s).masked_fill(mask, 0.0)  # (1 - M) * (u_r * u_s), Eq. 2 and 6
        return out * scale[:, :, None, None], mask

    def permanent_mask(self, d_s: float, tradeoff_rate: float) -> Tensor:
        """``(C_out,)`` mask of the channels removed for good at deployment (Sec. 3.4)."""
        return permanent_mask(self.static_importance.detach(), d_s, tradeoff_rate)[0]


@dataclass
class GateConfig:
    """How the gates act.

    Attributes:
        gating: False runs the plain backbone (pre-training); True applies Eq. 2.
        hold_static: hold ``u_s`` at 1 (importance stage 1, paper Sec. 4.1).
        tradeoff_rate: ``R_r`` in [0, 1]; 1 is pure runtime pruning, 0 pure static pruning.
        runtime_order: what the runtime mask ranks: ``"importance"`` (the per-input ``u_r``, the
            paper's) or ``"static"`` (``u_s``: keep sets are prefixes of one order per layer, which
            the executor runs as dense slices; :func:`~prune_env.nets.masks.runtime_ranking`).
        count_multiple: round runtime keep counts up to a multiple of this (1: the paper's rule).
    """

    gating: bool = True
    hold_static: bool = False
    tradeoff_rate: float = 0.5
    runtime_order: str = "importance"
    count_multiple: int = 1

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.tradeoff_rate) <= 1.0:
            raise ValueError(f"tradeoff_rate must be in [0, 1], got {self.tradeoff_rate}")
        check_order(self.runtime_order)
        self.count_multiple = check_multiple(self.count_multiple)


class Stage(nn.Module):
    """One step of the network: a prunable layer (its gate) and what follows it up to the next one.

    The same stage classes serve the trained network, whose gate is a :class:`GatedConv` called
    with ``(d_r, d_s, cfg)``, and the deployed one, whose gate
    (:class:`~prune_env.deploy.export.DeployedGate`) is called with ``d_r``: :meth:`forward` runs
    the gate, then :meth:`tail`.

    **Channel consumers, declared once.** Who reads which channels is stated by each stage class
    in four class attributes; cost accounting (:meth:`cost_roles`), static export
    (:meth:`StagedNet.channel_consumers`, :meth:`rebuild`), the re-ranked static baselines, the runtime executor
    and the ONNX export all ask them, so that a new block type is one class here:

    * ``gated_output``: the stage output's channels are the gate's (the next stage, or the head,
      reads only the kept channels); False when the gate's channels end inside the stage.
    * ``input_consumers``: names (in the stage) of the modules that read the stage input by
      input channel, whose input therefore shrinks with the previous gate; None when the input
      channels never shrink (a residual shortcut carries them).
    * ``gate_consumers``: ``(conv, norm)`` names of the layers inside the stage that read the
      gate's channels (empty when ``gated_output``).
    * ``gate_path``: names of the modules the gate output passes through before it leaves the
      stage (e.g. dropout); they must act channel by channel.
    """

    gated: nn.Module
    gated_output: bool
    input_consumers: tuple[str, ...] | None
    gate_consumers: tuple[tuple[str, str], ...]
    gate_path: tuple[str, ...]

    def forward(self, x: Tensor, pooled: Tensor, *gate_args: Any) -> tuple[Tensor, Tensor]:
        """The gated layer on ``x`` (``gate_args``: ``d_r, d_s, cfg`` trained, ``d_r`` deployed), then :meth:`tail`."""
        h, mask = self.gated(x, pooled, *gate_args)
        return self.tail(x, h), mask

    def tail(self, x: Tensor, h: Tensor, read: Callable[[Tensor], Tensor] | None = None) -> Tensor:
        """What follows the gate: the stage output from its input ``x`` and the gate output ``h``.

        ``read`` replaces ``norm(conv(h))`` of the gate consumer (the runtime executor passes its
        sliced, BN-folded conv); stages without gate consumers ignore it.
        """
        raise NotImplementedError

    def cost_roles(self) -> Iterator[tuple[nn.Module, str | None, bool]]:
        """For cost accounting: ``(module, input source, output follows this gate)``.

        The input source is ``"previous"`` (the previous stage's output), ``"this"`` (this
        stage's gate) or None (channels that no gate touches).
        """
        reads_input = "gated.conv" in (self.input_consumers or ())
        yield self.gated.conv, "previous" if reads_input else None, True
        yield self.gated.bn, None, True
        for conv, _ in self.gate_consumers:
            yield self.get_submodule(conv), "this", False

    def rebuild(self, gate: nn.Module) -> "Stage":
        """A copy of this stage around another gate (a deployed or frozen one); nothing else is shared."""
        return copy.deepcopy(self, {id(self.gated): gate})


class SequentialStage(Stage):
    """A plain conv layer followed by optional non-prunable ops (e.g. dropout)."""

    gated_output = True
    input_consumers = ("gated.conv", "gated.predictor")
    gate_consumers = ()
    gate_path = ("post",)

    def __init__(self, gated: GatedConv, post: nn.Module | None = None):
        super().__init__()
        self.gated = gated
        self.post = post if post is not None else nn.Identity()

    def tail(self, x, h, read=None):
        return self.post(h)


class ResidualStage(Stage):
    """A basic residual block whose first conv is the prunable layer (``docs/design.md``)."""

    gated_output = False
    input_consumers = None  # the shortcut carries the block input: its channels never shrink
    gate_consumers = (("conv2", "bn2"),)
    gate_path = ()

    def __init__(self, gated: GatedConv, conv2: nn.Conv2d, bn2: nn.Module, shortcut: nn.Module | None = None):
        super().__init__()
        self.gated = gated
        self.conv2 = conv2
        self.bn2 = bn2
        self.shortcut = shortcut if shortcut is not None else nn.Identity()
        self.act = nn.ReLU(inplace=True)

    def tail(self, x, h, read=None):
        z = self.bn2(self.conv2(h)) if read is None else read(h)
        return self.act(z + self.shortcut(x))


class BlockStage(ResidualStage):
    """A residual block with more after its second conv's norm (``rest``: e.g. a bottleneck's
    ``ReLU -> conv3 -> BN``) and any output activation (None: none); the first conv is the prunable layer."""

    def __init__(self, gated: GatedConv, conv2: nn.Conv2d, bn2: nn.Module, shortcut: nn.Module | None = None, *,
                 rest: nn.Module | None = None, out_act: nn.Module | None = None):
        super().__init__(gated, conv2, bn2, shortcut)
        self.rest = rest if rest is not None else nn.Identity()
        self.act = out_act if out_act is not None else nn.Identity()

    def tail(self, x, h, read=None):
        z = self.bn2(self.conv2(h)) if read is None else read(h)
        return self.act(self.rest(z) + self.shortcut(x))


@dataclass
class StepState:
    """A batch of images part-way through the network.

    Attributes:
        x: features entering stage ``t``.
        t: index of the next prunable layer (``L`` once the logits are computed).
        pooled: ``GAP(x)``, shape ``(B, C_in_t)``: what the runtime agent observes at step ``t``.
        kept: ``(B, L)`` int64 kept channels per layer (columns ``>= t`` not yet filled).
        masks: the masks of the layers done so far, each ``(B, C_t)``, True = pruned.
        logits: ``(B, classes)`` once ``t == L``, else None.
        runtime_ratios: the runtime keep ratios applied so far (a float or ``(B,)`` per layer).
    """

    x: Tensor | None
    t: int
    pooled: Tensor | None
    kept: Tensor
    masks: list[Tensor] = field(default_factory=list)
    logits: Tensor | None = None
    runtime_ratios: list[KeepRatio] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.logits is not None


def scalar_or_tensor(ratios: Any) -> float | Tensor:
    """Keep ratios given as one number (a Python number or a 0-d array) as a float, else as a tensor."""
    if isinstance(ratios, (int, float)):
        return float(ratios)
    r = torch.as_tensor(ratios)
    return float(r) if r.dim() == 0 else r


def layer_ratio(ratios: Any, t: int) -> KeepRatio:
    """The keep ratio of layer ``t`` from a scalar, an ``(L,)`` sequence or a ``(B, L)`` tensor."""
    r = scalar_or_tensor(ratios)
    if isinstance(r, float):
        return r
    return float(r[t]) if r.dim() == 1 else r[:, t]


class StagedNet:
    """The structure shared by :class:`GatedNet` and the deployed network: ``stem``, ``stages``, ``head``.

    One stage per prunable layer; what reads whose channels comes from the stages' declarations
    (see :class:`Stage`).
    """

    stem: nn.Module
    stages: nn.ModuleList
    head: nn.Module

    @property
    def num_layers(self) -> int:
        """``L``, the number of prunable layers (the episode length)."""
        return len(self.stages)

    @property
    def layers(self) -> list[nn.Module]:
        """The gate of every stage."""
        return [s.gated for s in self.stages]

    @property
    def channels(self) -> list[int]:
        """Output channels ``C_t`` of every prunable layer (those the masks rank)."""
        return [g.channels for g in self.layers]

    def importance_parameters(self) -> Iterator[Tensor]:
        """Parameters of the predictors ``f`` and the static importances ``u_s`` (the gating overhead)."""
        for g in self.layers:
            yield from g.predictor.parameters()
            yield g.static_importance

    def backbone_parameters(self) -> Iterator[nn.Parameter]:
        """Every parameter but the importance ones."""
        extra = {id(p) for p in self.importance_parameters()}
        return (p for p in self.parameters() if id(p) not in extra)

    # ------------------------------------------------------------------ channel consumers
    def reads_previous(self, t: int) -> bool:
        """Whether stage ``t``'s input channels are stage ``t - 1``'s gate channels (so they shrink with its mask)."""
        return t > 0 and self.stages[t - 1].gated_output and self.stages[t].input_consumers is not None

    def head_consumer(self) -> tuple[str, nn.Module] | None:
        """``("head.<name>", module)``: the head's first conv or linear layer, or None."""
        found = first_weighted_module(self.head)
        return None if found is None else (f"head.{found[0]}" if found[0] else "head", found[1])

    def channel_consumers(self, t: int) -> list[tuple[str, nn.Module]]:
        """``(name, module)`` of every conv or linear layer that reads prunable layer ``t``'s channels.

        Names are those of ``named_modules()``. The readers are the stage's own gate consumers,
        or, when the gate's channels leave the stage, the next stage's input consumers (its conv
        and importance predictor) or, after the last stage, the head's first conv / linear layer.

        Raises:
            NotImplementedError: the gate's channels reach a layer that cannot follow them (a
                residual block's input, a head without conv / linear layer or of another width).
        """
        stage = self.stages[t]
        if not stage.gated_output:
            return [(f"stages.{t}.{conv}", stage.get_submodule(conv)) for conv, _ in stage.gate_consumers]
        if t + 1 < self.num_layers:
            nxt = self.stages[t + 1]
            if nxt.input_consumers is None:
                raise NotImplementedError(f"layer {t}'s gated channels feed stage {t + 1} ({type(nxt).__name__}), "
                                          "whose input channels cannot shrink")
            return [(f"stages.{t + 1}.{name}", nxt.get_submodule(name)) for name in nxt.input_consumers]
        found = self.head_consumer()
        if found is None:
            raise NotImplementedError("the head has no conv/linear layer to read the last layer's channels")
        name, module = found
        if input_width(module) != self.layers[t].channels:
            raise NotImplementedError(f"head layer {name!r} reads {input_width(module)} channels, "
                                      f"the last layer has {self.layers[t].channels}")
        return [found]


class GatedNet(StagedNet, nn.Module):
    """A backbone whose prunable layers are gated; the common wrapper of every backbone.

    Args:
        stem: non-prunable layers before the first stage.
        stages: one :class:`Stage` per prunable layer, in forward order.
        head: layers after the last stage, producing logits.
        config: what rebuilds this network (the builder's name and keyword arguments).
    """

    def __init__(self, stem: nn.Module, stages: list[Stage], head: nn.Module, config: dict | None = None):
        super().__init__()
        self.stem = stem
        self.stages = nn.ModuleList(stages)
        self.head = head
        self.gate_config = GateConfig()
        self.config = dict(config or {})

    # ------------------------------------------------------------------ structure (see StagedNet)
    @property
    def in_channels(self) -> list[int]:
        """Input channels of every prunable layer (the pooled observation's width)."""
        return [s.gated.in_channels for s in self.stages]

    def configure(self, *, gating: bool | None = None, hold_static: bool | None = None,
                  tradeoff_rate: float | None = None, runtime_order: str | None = None,
                  count_multiple: int | None = None) -> "GatedNet":
        """Change the gate mode in place (see :class:`GateConfig`); returns self."""
        cfg = self.gate_config
        self.gate_config = GateConfig(
            gating=cfg.gating if gating is None else gating,
            hold_static=cfg.hold_static if hold_static is None else hold_static,
            tradeoff_rate=cfg.tradeoff_rate if tradeoff_rate is None else float(tradeoff_rate),
            runtime_order=cfg.runtime_order if runtime_order is None else runtime_order,
            count_multiple=cfg.count_multiple if count_multiple is None else count_multiple,
        )
        return self

    def permanent_masks(self, static_keep_ratios: Any) -> list[Tensor]:
        """Per layer, the ``(C_t,)`` mask of channels removed for good at deployment."""
        rate = self.gate_config.tradeoff_rate
        return [g.permanent_mask(float(layer_ratio(static_keep_ratios, t)), rate) for t, g in enumerate(self.layers)]

    # ------------------------------------------------------------------ stepping API
    def begin(self, images: Tensor) -> StepState:
        """Run the stem on a batch; the returned state's ``pooled`` is the observation of layer 0."""
        x = self.stem(images)
        kept = torch.zeros(images.shape[0], self.num_layers, dtype=torch.long, device=images.device)
        return StepState(x=x, t=0, pooled=global_pool(x), kept=kept)

    def step(self, state: StepState, d_r: KeepRatio = 1.0, d_s: KeepRatio = 1.0) -> StepState:
        """Run prunable layer ``state.t`` with runtime keep ratio ``d_r`` and static ``d_s``.

        ``d_r`` and ``d_s`` are scalars or ``(B,)`` tensors. Returns the state after the layer:
        its ``pooled`` is the next layer's observation, or, after the last layer, ``logits``
        holds the network output and ``x``/``pooled`` are None.
        """
        if state.done:
            raise RuntimeError("the episode is over: all prunable layers have been run")
        t = state.t
        x, mask = self.stages[t](state.x, state.pooled, d_r, d_s, self.gate_config)
        kept = state.kept.clone()
        kept[:, t] = mask.shape[1] - mask.sum(dim=1)
        masks = [*state.masks, mask]
        ratios = [*state.runtime_ratios, d_r]
        if t + 1 < self.num_layers:
            return StepState(x=x, t=t + 1, pooled=global_pool(x), kept=kept, masks=masks, runtime_ratios=ratios)
        return StepState(x=None, t=t + 1, pooled=None, kept=kept, masks=masks, logits=self.head(x), runtime_ratios=ratios)

    def run(self, images: Tensor, runtime_keep_ratios: Any = 1.0, static_keep_ratios: Any = 1.0) -> StepState:
        """One-shot forward through the stepping API; returns the final state.

        Ratios are scalars, ``(L,)`` sequences (one per layer) or ``(B, L)`` tensors.
        """
        state = self.begin(images)
        for t in range(self.num_layers):
            state = self.step(state, layer_ratio(runtime_keep_ratios, t), layer_ratio(static_keep_ratios, t))
        return state

    def forward(self, images: Tensor, runtime_keep_ratios: Any = 1.0, static_keep_ratios: Any = 1.0) -> Tensor:
        """Logits of the gated network with the given keep ratios (default: dense)."""
        return self.run(images, runtime_keep_ratios, static_keep_ratios).logits
