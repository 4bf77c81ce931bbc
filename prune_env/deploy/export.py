"""Static export: the gated network with its permanent sets physically removed (paper Sec. 3.4).

:func:`export_static` turns a trained :class:`~prune_env.nets.gated.GatedNet` and its static
keep ratios ``d_s`` into a :class:`DeployedNet`: every prunable layer loses the channels of its
permanent set P (the ``floor((1 - d_s) (1 - R_r) C)`` channels of smallest ``u_s``) from its
conv's output, its BN, the next conv's input (sequential nets) or the block's second conv's
input (ResNets), the next predictor's input and, after the last sequential layer, the linear
head's input. The deployed network still gates the surviving channels at run time, and for any
runtime keep ratios ``d_r`` it computes what the masked network ``net(x, d_r, d_s)`` computes
(``docs/design.md``, "Deployment consistency").

Exact mask equivalence
----------------------
The trade-off pruner (Eq. 3-5) ranks *all* ``C`` channels: ``M_r`` prunes the ``C - keep(d_r, C)``
smallest ``u_r``, counts from ``C``, and whether a channel of P falls into ``M_r`` changes how
many survivors do and how large ``|M_s - M_o|`` is. P lies inside ``M_s`` (it is a prefix of
the same stable ``u_s`` ranking), but its ``u_r`` values still move the survivors' masks when
``0 < R_r < 1``. So survivor importances alone, even with adjusted counts, do not give the same
mask, and filling the removed ``u_r`` with ``-inf`` does not either (it forces P into ``M_r``,
which the masked network does not do). What the export keeps is therefore:

* the full-length static importance ``u_s`` (``C`` floats, a buffer);
* the predictor ``f`` with all ``C`` output rows (its input columns for removed channels of the
  previous layer *are* dropped: those inputs are exactly zero in the masked network);
* per layer the surviving channel indices, ``C``, ``d_s`` and ``R_r``.

At run time the deployed layer computes ``u_r`` for all ``C`` channels, runs the very same
:func:`~prune_env.nets.masks.tradeoff_mask` on the full vectors, and restricts the mask and the
Eq. 2 scale ``(1 - M) (u_r u_s)`` to the survivors. The predictor rows of removed channels are
importance-predictor overhead (reported apart, never part of the backbone count); no removed
conv, BN or linear weight is kept. With ``R_r = 1`` P is empty and nothing is removed; with
``R_r = 0`` the mask does not depend on the input and is stored as a constant.

Rounding (``round_to``)
-----------------------
``round_to=m`` stores ``min(C, m * ceil((C - |P|) / m))`` channels per layer: it removes only
the ``C - stored`` channels of smallest ``u_s``, a prefix of P. The channels of P it keeps are
in every mask of the masked network, so they stay masked (their output is exactly 0) and the
deployed network still equals ``net(x, d_r, d_s)``; only the stored parameter count, now
``CostModel.params(stored)``, and the tensor shapes change.

Channel order (``runtime_order``)
---------------------------------
Under ``runtime_order="static"`` (:class:`~prune_env.nets.gated.GateConfig`) the runtime mask
ranks ``u_s``, so every keep set is a prefix of the descending ``u_s`` order. The export then
stores each layer's survivors in that order (not ascending): the channels an input keeps are the
first ``k`` stored ones, and :class:`~prune_env.deploy.RuntimeExecutor` runs
``weight[:k_out, :k_in]`` with no gather. The function is the same in either storage order.
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from prune_env.checkpoint import atomic_save
from prune_env.nets.gated import GatedNet, KeepRatio, ResidualStage, SequentialStage, Stage, StagedNet, global_pool, layer_ratio
from prune_env.nets.masks import check_multiple, check_order, importance_ranks, runtime_ranking, static_order, tradeoff_mask
from prune_env.nets.slicing import first_weighted_module, replace_submodule, slice_conv, slice_input, slice_linear, slice_norm  # noqa: F401


# ---------------------------------------------------------------------------------- ratios
def layer_ratios(ratios: Any, num_layers: int) -> list[float]:
    """Per-layer floats from a scalar or an ``(L,)`` sequence (static keep ratios are per layer)."""
    if isinstance(ratios, (int, float)):
        return [float(ratios)] * num_layers
    r = torch.as_tensor(ratios, dtype=torch.float64).flatten()
    if r.numel() == 1:
        return [float(r)] * num_layers
    if r.numel() != num_layers:
        raise ValueError(f"expected a scalar or {num_layers} static keep ratios, "
                         f"got shape {tuple(torch.as_tensor(ratios).shape)}")
    return [float(v) for v in r]


# ---------------------------------------------------------------------------------- modules
class DeployedGate(nn.Module):
    """A prunable layer with its permanent set removed: conv -> BN -> act on the survivors only.

    Output (Eq. 2, 6) on the ``S`` surviving channels: ``F_out * (1 - M) * (u_r * u_s)``, where
    ``M`` is the trade-off mask of the *full* layer (all ``C`` channels, see the module
    docstring) restricted to the survivors.

    Buffers: ``survivors`` (``S`` original channel indices, ascending; by descending ``u_s`` under
    ``runtime_order="static"``), ``static_importance``
    (full ``u_s``, ``C`` values), ``dense_mask`` (the ``(S,)`` survivor mask at ``d_r = 1``,
    which does not depend on the input).
    """

    survivors: Tensor
    static_importance: Tensor
    dense_mask: Tensor

    def __init__(self, conv: nn.Conv2d, bn: nn.Module, act: nn.Module, predictor: nn.Linear, static_importance: Tensor,
                 survivors: Tensor, static_keep_ratio: float, tradeoff_rate: float, *,
                 runtime_order: str = "importance", count_multiple: int = 1):
        super().__init__()
        self.runtime_order = check_order(runtime_order)
        self.count_multiple = check_multiple(count_multiple)
        self.conv = conv
        self.bn = bn
        self.act = act
        self.predictor = predictor
        self.channels = int(static_importance.numel())
        self.static_keep_ratio = float(static_keep_ratio)
        self.tradeoff_rate = float(tradeoff_rate)
        self.register_buffer("survivors", survivors.clone().long())
        self.register_buffer("static_importance", static_importance.detach().clone())
        u_s = self.static_importance.unsqueeze(0)
        # at d_r = 1, M_r is empty and the mask depends on u_s only (any u_r gives the same)
        full = tradeoff_mask(torch.zeros_like(u_s), u_s, 1.0, self.static_keep_ratio, self.tradeoff_rate)[0]
        self.register_buffer("dense_mask", full.index_select(0, self.survivors))

    @property
    def stored_channels(self) -> int:
        """``S``: output channels physically stored."""
        return int(self.survivors.numel())

    @property
    def input_independent(self) -> bool:
        """True when the mask never depends on the input or ``d_r`` (``R_r = 0``: ``M = M_s`` = P)."""
        return self.tradeoff_rate == 0.0

    def mask(self, u_r: Tensor, d_r: KeepRatio) -> Tensor:
        """``(B, S)`` survivor mask (True = pruned) from the full ``(B, C)`` runtime importance."""
        batch = u_r.shape[0]
        if self.input_independent or (isinstance(d_r, float) and d_r >= 1.0):
            return self.dense_mask.unsqueeze(0).expand(batch, -1)
        ranked = runtime_ranking(u_r, self.static_importance, self.runtime_order)
        full = tradeoff_mask(ranked, self.static_importance, d_r, self.static_keep_ratio, self.tradeoff_rate,
                             self.count_multiple)
        return full.index_select(1, self.survivors)

    def forward(self, x: Tensor, pooled: Tensor, d_r: KeepRatio) -> tuple[Tensor, Tensor]:
        """Gated survivor output ``(B, S, H, W)`` and the ``(B, S)`` mask."""
        out = self.act(self.bn(self.conv(x)))
        u_r = self.predictor(pooled)  # (B, C): all C rows, the mask ranks every channel
        mask = self.mask(u_r, d_r)
        scale = u_r.index_select(1, self.survivors) * self.static_importance.index_select(0, self.survivors)
        scale = scale.masked_fill(mask, 0.0)
        return out * scale[:, :, None, None], mask

    def extra_repr(self) -> str:
        return (f"channels={self.channels}, stored={self.stored_channels}, d_s={self.static_keep_ratio}, "
                f"R_r={self.tradeoff_rate}, order={self.runtime_order}, multiple={self.count_multiple}")


#: The deployed stages are the trained stage classes around a :class:`DeployedGate` (see
#: :meth:`~prune_env.nets.gated.Stage.rebuild`); these names stay for files and code that use them.
DeployedStage = Stage
DeployedSequentialStage = SequentialStage
DeployedResidualStage = ResidualStage


@dataclass
class DeployedOutput:
    """Result of :meth:`DeployedNet.run`.

    Attributes:
        logits: ``(B, classes)``.
        masks: per layer the ``(B, S_t)`` survivor mask (True = pruned).
        kept: ``(B, L)`` channels computed per layer and sample (what :meth:`CostModel.macs` takes).
    """

    logits: Tensor
    masks: list[Tensor]
    kept: Tensor


class DeployedNet(StagedNet, nn.Module):
    """A statically pruned gated network that still prunes at run time (made by :func:`export_static`).

    ``forward(images, runtime_keep_ratios)`` equals ``net(images, runtime_keep_ratios, d_s)`` of
    the network it was exported from, with ``d_s`` the static keep ratios fixed at export.

    Attributes:
        config: the source network's ``config`` (backbone name and keyword arguments).
        static_keep_ratios: ``d_s`` per layer.
        tradeoff_rate: ``R_r``.
        round_to: the channel-rounding multiple used at export, or None.
        runtime_order: ``"importance"`` or ``"static"`` (see the module docstring).
        count_multiple: runtime keep counts are rounded up to a multiple of this.
    """

    def __init__(self, stem: nn.Module, stages: Sequence[Stage], head: nn.Module, *, config: dict,
                 static_keep_ratios: Sequence[float], tradeoff_rate: float, round_to: int | None,
                 runtime_order: str = "importance", count_multiple: int = 1):
        super().__init__()
        self.stem = stem
        self.stages = nn.ModuleList(stages)
        self.head = head
        self.config = dict(config)
        self.static_keep_ratios = [float(v) for v in static_keep_ratios]
        self.tradeoff_rate = float(tradeoff_rate)
        self.round_to = round_to
        self.runtime_order = runtime_order
        self.count_multiple = count_multiple

    # ------------------------------------------------------------------ structure (see StagedNet)
    @property
    def stored_channels(self) -> list[int]:
        """Output channels ``S_t`` physically stored per prunable layer."""
        return [g.stored_channels for g in self.layers]

    def survivors(self) -> list[Tensor]:
        """Per layer the original indices of the stored channels."""
        return [g.survivors for g in self.layers]

    def backbone_param_count(self) -> int:
        """Stored backbone parameters; equals ``CostModel(net, shape).params(stored_channels)``."""
        return sum(p.numel() for p in self.backbone_parameters())

    def overhead_param_count(self) -> int:
        """Stored gating overhead: predictors (all ``C`` output rows) and full ``u_s`` vectors."""
        return sum(p.numel() for p in self.importance_parameters())

    # ------------------------------------------------------------------ forward
    def run(self, images: Tensor, runtime_keep_ratios: Any = 1.0) -> DeployedOutput:
        """Forward pass returning logits, survivor masks and kept counts.

        ``runtime_keep_ratios`` is a scalar, an ``(L,)`` sequence or a ``(B, L)`` tensor.
        """
        x = self.stem(images)
        masks = []
        for t, stage in enumerate(self.stages):
            x, mask = stage(x, global_pool(x), layer_ratio(runtime_keep_ratios, t))
            masks.append(mask)
        kept = torch.stack([m.shape[1] - m.sum(1) for m in masks], dim=1)
        return DeployedOutput(self.head(x), masks, kept)

    def forward(self, images: Tensor, runtime_keep_ratios: Any = 1.0) -> Tensor:
        """Logits with runtime keep ratios ``d_r`` (default 1: only the static pruning acts)."""
        return self.run(images, runtime_keep_ratios).logits

    def spec(self) -> dict:
        """What rebuilds this network's shapes from its source backbone (see :func:`assemble`)."""
        return {
            "config": dict(self.config),
            "static_keep_ratios": list(self.static_keep_ratios),
            "tradeoff_rate": self.tradeoff_rate,
            "round_to": self.round_to,
            "runtime_order": self.runtime_order,
            "count_multiple": self.count_multiple,
            "survivors": [s.cpu().tolist() for s in self.survivors()],
        }


# ---------------------------------------------------------------------------------- export
def removed_channels(static_importance: Tensor, permanent: Tensor, round_to: int | None) -> Tensor:
    """``(C,)`` mask of the channels to remove: P, or its smallest-``u_s`` prefix under rounding.

    With ``round_to=m`` the stored count ``C - |P|`` is rounded up to a multiple of ``m``
    (at most ``C``), so fewer of P's channels are removed: those of smallest ``u_s``.
    """
    channels = permanent.numel()
    n_removed = int(permanent.sum())
    if round_to is not None:
        if round_to < 1:
            raise ValueError(f"round_to must be a positive integer, got {round_to}")
        stored = min(channels, round_to * math.ceil((channels - n_removed) / round_to))
        n_removed = channels - stored
    removed = importance_ranks(static_importance.detach()) < n_removed
    if not bool((permanent | ~removed).all()):  # removed must lie inside P
        raise AssertionError("removed channels must be a subset of the permanent set P")
    return removed


def assemble(net: GatedNet, survivors: Sequence[Tensor], static_keep_ratios: Sequence[float], tradeoff_rate: float,
             round_to: int | None = None, *, runtime_order: str = "importance", count_multiple: int = 1) -> DeployedNet:
    """Build the deployed network keeping the given channels of each prunable layer, in the given order.

    Weights are copied (sliced) from ``net``; nothing is shared with it. :func:`export_static`
    chooses ``survivors``; :func:`~prune_env.deploy.load_deployed` passes the saved ones.
    """
    if len(survivors) != net.num_layers:
        raise ValueError(f"expected {net.num_layers} survivor index sets, got {len(survivors)}")
    device = next(net.parameters()).device
    survivors = [torch.as_tensor(s, dtype=torch.long, device=device) for s in survivors]
    stages = []
    for t, stage in enumerate(net.stages):
        gated, keep = stage.gated, survivors[t]
        gate = DeployedGate(
            conv=slice_conv(gated.conv, keep, None),
            bn=slice_norm(gated.bn, keep),
            act=copy.deepcopy(gated.act),
            predictor=copy.deepcopy(gated.predictor),  # all C rows, see module docstring
            static_importance=gated.static_importance.detach(),
            survivors=keep,
            static_keep_ratio=static_keep_ratios[t],
            tradeoff_rate=tradeoff_rate,
            runtime_order=runtime_order,
            count_multiple=count_multiple,
        )
        stages.append(stage.rebuild(gate))
    deployed = DeployedNet(copy.deepcopy(net.stem), stages, copy.deepcopy(net.head), config=net.config,
                           static_keep_ratios=static_keep_ratios, tradeoff_rate=tradeoff_rate, round_to=round_to,
                           runtime_order=runtime_order, count_multiple=count_multiple)
    # whatever reads layer t's channels (the next conv and predictor, a block's conv2, the head's
    # classifier; the stages declare it) reads the survivors only: the removed inputs are zero
    for t in range(deployed.num_layers):
        for name, module in deployed.channel_consumers(t):
            replace_submodule(deployed, name, slice_input(module, survivors[t]))
    return deployed.to(device).train(net.training)


def export_static(net: GatedNet, static_keep_ratios: Any = 1.0, *, round_to: int | None = None,
                  runtime_order: str | None = None) -> DeployedNet:
    """Remove every layer's permanent set P for good (paper Sec. 3.4) and return the deployed network.

    Args:
        net: the trained gated network; its ``gate_config.tradeoff_rate`` is ``R_r``.
        static_keep_ratios: ``d_s``, a scalar or one value per layer.
        round_to: round stored channel counts up to a multiple of this (e.g. 8) for
            hardware-friendly shapes, keeping (still masked) the channels of P with the
            largest ``u_s``; None keeps exactly ``C - |P|``.
        runtime_order: ``"importance"`` or ``"static"`` (see the module docstring); None takes the
            network's ``gate_config.runtime_order``. The runtime keep-count rounding is the network's
            ``gate_config.count_multiple``.

    Returns:
        A :class:`DeployedNet` in eval mode, with ``deployed(x, d_r) == net(x, d_r, d_s)`` (up to
        float rounding, the network configured with the same ``runtime_order``) for any runtime
        keep ratios ``d_r``, and
        ``deployed.backbone_param_count() == CostModel(net, shape).params(deployed.stored_channels)``.
    """
    cfg = net.gate_config
    if not cfg.gating:
        raise ValueError("export_static needs a gated network (gate_config.gating=True)")
    if cfg.hold_static:
        raise ValueError("export_static needs the learned u_s (gate_config.hold_static=False)")
    order = check_order(cfg.runtime_order if runtime_order is None else runtime_order)
    ratios = layer_ratios(static_keep_ratios, net.num_layers)
    permanent = net.permanent_masks(ratios)
    survivors = []
    for gated, p in zip(net.layers, permanent):
        removed = removed_channels(gated.static_importance, p, round_to)
        if order == "static":  # by descending u_s: every keep set is a prefix
            by_u_s = static_order(gated.static_importance.detach())
            survivors.append(by_u_s[~removed[by_u_s]])
        else:
            survivors.append(torch.nonzero(~removed).flatten())
    return assemble(net, survivors, ratios, cfg.tradeoff_rate, round_to, runtime_order=order,
                    count_multiple=cfg.count_multiple).eval()


# ---------------------------------------------------------------------------------- save / load
DEPLOYED_FORMAT = "prune_env.deployed"
DEPLOYED_VERSION = 1


def save_deployed(model: DeployedNet, path: str | os.PathLike) -> Path:
    """Write a deployed network atomically so that :func:`load_deployed` rebuilds it alone.

    The file holds the pruned shapes (:meth:`DeployedNet.spec`: backbone config, survivor
    indices, ``d_s``, ``R_r``) and the state dict; loading rebuilds the backbone from its config,
    cuts it to the stored shapes and loads the weights, so the original trained network is not
    needed (a converted network is rebuilt by its builder, which ``load_deployed(models=...)`` must
    allow). A network with no registered backbone name in its config is saved as a whole
    pickled module instead.
    """
    payload: dict[str, Any] = {"format": DEPLOYED_FORMAT, "version": DEPLOYED_VERSION,
                               "stored_channels": model.stored_channels, "channels": model.channels}
    if "name" in model.config:
        payload["spec"] = model.spec()
        payload["state_dict"] = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    else:
        payload["module"] = copy.deepcopy(model).cpu()
    return atomic_save(payload, path)


def load_deployed(path: str | os.PathLike, device: str | torch.device = "cpu", *, trusted: bool = False,
                  models: tuple = ()) -> DeployedNet:
    """Load a network written by :func:`save_deployed` (in eval mode).

    By default the file is read without running code from it (``torch.load(weights_only=True)``):
    a network saved with its backbone's config loads this way. A network saved as a whole
    pickled module (no registered backbone) is refused with a
    :class:`~prune_env.checkpoint.CheckpointError`: loading it needs ``trusted=True``, which
    unpickles the file and so runs any code it names. Pass ``trusted=True`` only for files you
    wrote or whose source you trust.

    Raises:
        FileNotFoundError: nothing at ``path``.
        CheckpointError: an empty, truncated, foreign or newer-format file, or (untrusted) one
            that holds pickled Python objects.
    """
    from prune_env.checkpoint import CheckpointError, check_format_version, load_file

    kind = "deployed model"
    payload = load_file(path, kind=kind, trusted=trusted,
                        trust_hint="if you wrote the file or trust its source, load_deployed(path, trusted=True) unpickles it")
    if not isinstance(payload, dict) or payload.get("format") != DEPLOYED_FORMAT:
        raise CheckpointError(path, "not a deployed prune_env model (see save_deployed)", kind)
    check_format_version(path, payload.get("version"), DEPLOYED_VERSION, kind)
    if "module" in payload:
        model = payload["module"]
    else:
        from prune_env.nets.models import rebuild as rebuild_net

        spec = payload["spec"]
        survivors = [torch.tensor(s, dtype=torch.long) for s in spec["survivors"]]
        try:
            net = rebuild_net(spec["config"], models)
        except ValueError as exc:
            raise CheckpointError(path, str(exc), kind) from None
        model = assemble(net, survivors, spec["static_keep_ratios"], spec["tradeoff_rate"],
                         spec["round_to"], runtime_order=spec.get("runtime_order", "importance"),
                         count_multiple=spec.get("count_multiple", 1))
        model.load_state_dict(payload["state_dict"])
    return model.to(device).eval()
