"""What both environments share: the gated network, its data, costs, budget, observations, reward scale.

A :class:`PruningTask` is built once from the environment keywords and shared by every episode
(and by all sub-environments of a batched VecEnv). It knows how to

* encode what the runtime agent observes before layer ``t`` (:meth:`runtime_observation`);
* describe layer ``t`` to the static agent (:meth:`static_observation`);
* run a batch of images through the network under a pair of policies (:meth:`rollout`).
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from prune_env.costs import CostModel
from prune_env.envs.actions import as_keep_ratios
from prune_env.envs.budgets import BudgetRange
from prune_env.envs.difficulty import CONFIDENCE_FEATURES, ConfidenceProbes
from prune_env.envs.reward import (
    BUDGET_MODES,
    LOSS_SCALES,
    PENALTIES,
    REWARD_MODES,
    budget_term,
    make_binned_dual,
    make_dual,
    make_normalizer,
    resolved_loss_scale,
)
from prune_env.nets.gated import GatedNet, StepState
from prune_env.nets.masks import RUNTIME_ORDERS, check_multiple
from prune_env.policies import KeepRatioPolicy, as_policy
from prune_env.rewards import BinnedDual, BinnedLossNormalizer, DualVariable, LossNormalizer

SPLITS = ("train", "val", "test")
OBSERVATION_MODES = ("encoded", "raw", "encoded+confidence", "raw+confidence")
#: images the confidence probes of an ``observation="...+confidence"`` mode are fitted on (training split)
PROBE_IMAGES = 8192
BUDGET_KINDS = ("sparsity", "fraction")
#: what an agent's action is under a budget range: the keep ratio itself, or its offset from the
#: episode's uniform keep ratio (plus the range's reference, so that one action is the budget's keep ratio)
BUDGET_ACTIONS = ("absolute", "relative", "scaled")
#: the trade-off rate ``R_r`` each entry point starts from, named once (1: pure runtime pruning,
#: 0: pure static pruning, ``docs/design.md``); the keyword ``tradeoff_rate`` overrides it
RUNTIME_TRADEOFF_RATE = 1.0
STATIC_TRADEOFF_RATE = 0.0
JOINT_TRADEOFF_RATE = 0.5  # Algorithm 1 and joint agent training (the paper's main rows)
#: images preloaded into one tensor when their total size stays below this many floats
PRELOAD_LIMIT = 1 << 28


# --------------------------------------------------------------------------- validation
def check_range(name: str, value: Any, low: float, high: float, *, low_open: bool = False) -> float:
    """``value`` as a float, or a ValueError naming the parameter and the accepted range."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    ok = (v > low if low_open else v >= low) and v <= high and math.isfinite(v)
    if not ok:
        bracket = "(" if low_open else "["
        raise ValueError(f"{name} must be in {bracket}{low}, {high}], got {value!r}")
    return v


def check_keyword_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    """``value`` when it is one of ``choices``, else a ValueError naming the keyword ``name`` and them
    (the scripts' arguments have their own check, :func:`prune_env.cli.check_choice`)."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def check_device(name: str, value: Any) -> Any:
    """``value`` if it names a torch device usable here ('cpu', 'cuda', 'cuda:1', ...), else a ValueError naming ``name``."""
    try:
        device = torch.device(value)
    except (RuntimeError, TypeError):
        raise ValueError(f"{name} must be a torch device such as 'cpu', 'cuda' or 'cuda:0', got {value!r}") from None
    if device.type == "meta":
        raise ValueError(f"{name}={value!r}: the meta device holds no data; use 'cpu' or an accelerator")
    if device.type != "cpu":
        try:
            torch.empty(1, device=device)
        except (RuntimeError, AssertionError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ValueError(f"{name}={value!r} is not usable on this machine ({first}); use 'cpu'") from None
    return value


def _largest_meeting(cost, budget: float, low: float, iterations: int = 50) -> float:
    """The largest ratio in ``[low, 1]`` whose (non-decreasing) ``cost`` meets ``budget``, by bisection;
    ``low`` when none does.

    The ratio is returned as a float32 value (rounded down): the environments' action spaces are
    float32, and the nearest float32 of the bisection's edge can lie above it and keep one more
    channel (0.3125000156 keeps 20 of 64 channels, its nearest float32 21).
    """
    lo, hi = low, 1.0
    if cost(hi) <= budget + 1e-12:
        return hi
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if cost(mid) <= budget + 1e-12 else (lo, mid)
    single = np.float32(lo)
    if float(single) > lo:
        single = np.nextafter(single, np.float32(0.0))
    return float(single) if float(single) >= low else lo  # cost is non-decreasing: single <= lo meets it too


# --------------------------------------------------------------------------- data
class ImageSource:
    """Indexed access to one split's ``(image, label)`` pairs, preloaded when small enough."""

    def __init__(self, dataset: torch.utils.data.Dataset, device: torch.device):
        self.dataset = dataset
        self.device = device
        self.size = len(dataset)
        if self.size == 0:
            raise ValueError("the dataset split is empty")
        first, _ = dataset[0]
        self.image_shape = tuple(first.shape)
        self.images: Tensor | None = None
        self.labels: Tensor | None = None
        if self.size * first.numel() <= PRELOAD_LIMIT:
            from prune_env.data import materialize

            self.images, self.labels = materialize(dataset, device)

    def __len__(self) -> int:
        return self.size

    def get(self, indices: np.ndarray) -> tuple[Tensor, Tensor]:
        """Images ``(B, C, H, W)`` and labels ``(B,)`` at the given indices."""
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        if self.images is not None:
            idx = idx.to(self.device)
            return self.images[idx], self.labels[idx]
        items = [self.dataset[int(i)] for i in idx]
        return torch.stack([x for x, _ in items]).to(self.device), torch.tensor([y for _, y in items], device=self.device)


def task_split(splits: Any, split: str) -> torch.utils.data.Dataset:
    """The images an environment serves for ``split``: as they are, never randomly augmented.

    ``"train"`` is the training split *without* the dataset's training augmentation
    (``train_plain``): an environment's images are a function of its seed alone, the same
    distribution as the test images it is scored on, and not one random crop and flip of each
    image frozen at load time from the global RNG.
    """
    if split == "train" and getattr(splits, "train_plain", None) is not None:
        return splits.train_plain
    return getattr(splits, split)


# --------------------------------------------------------------------------- the task
@dataclass
class TaskConfig:
    """The keywords both environments share (see the environment docstrings)."""

    #: a backbone name, ``"module:function"``, a callable or an ``nn.Module`` (:mod:`prune_env.nets.models`)
    model: Any = None
    checkpoint: str | None = None
    #: a dataset name, ``"imagefolder:PATH"`` or a torch ``Dataset`` (:mod:`prune_env.own_data`)
    dataset: Any = None
    data_root: str | None = None
    download: bool = False
    split: str = "val"
    width: float | None = None
    #: one budget (a number), or a range the episodes draw theirs from (:mod:`prune_env.envs.budgets`)
    budget: float | str | tuple | list = 0.5
    budget_kind: str = "sparsity"
    tradeoff_rate: float = RUNTIME_TRADEOFF_RATE
    #: what the runtime mask ranks: ``"importance"`` (per-input ``u_r``, the paper's) or ``"static"``
    #: (``u_s``: prefixes the executor runs as dense slices); ``count_multiple`` rounds keep counts up
    runtime_order: str = "importance"
    count_multiple: int = 1
    alpha: float = 0.1
    alpha_budget: float = 10.0
    loss_lambda: float = 0.9
    loss_batch: int = 64
    budget_mode: str = "per_input"
    penalty: str = "absolute"
    loss_scale: str | None = None
    dual_init: float | None = None
    dual_lr: float = 0.5
    dual_kp: float = 2.0
    dual_max: float = 100.0
    dual_batch: int | None = None
    #: bins of a continuous budget range, each with its own lambda and beta (a set of values: one per value)
    dual_bins: int = 5
    #: a budget range: ``"relative"`` actions (default), ``"scaled"`` or ``"absolute"`` ones
    #: (:meth:`PruningTask.action_transform`)
    budget_action: str | None = None
    reward: str = "sparse"
    observation: str = "encoded"
    encoding_dim: int = 64
    device: str = "cpu"

    def validate(self) -> None:
        if self.checkpoint is not None and not isinstance(self.checkpoint, (str, os.PathLike)):
            raise TypeError(f"checkpoint must be a path (a string) or None, got {type(self.checkpoint).__name__} "
                            f"{self.checkpoint!r:.60}")
        if not isinstance(self.download, bool):
            raise ValueError(f"download must be True or False, got {self.download!r}")
        check_keyword_choice("split", self.split, SPLITS)
        check_keyword_choice("budget_kind", self.budget_kind, BUDGET_KINDS)
        check_keyword_choice("reward", self.reward, REWARD_MODES)
        check_keyword_choice("observation", self.observation, OBSERVATION_MODES)
        check_keyword_choice("budget_mode", self.budget_mode, BUDGET_MODES)
        check_keyword_choice("penalty", self.penalty, PENALTIES)
        if self.loss_scale is not None:
            check_keyword_choice("loss_scale", self.loss_scale, (*LOSS_SCALES, None))
        self.dual_max = check_range("dual_max", self.dual_max, 0.0, 1e6, low_open=True)
        if self.dual_init is not None:
            self.dual_init = check_range("dual_init", self.dual_init, 0.0, self.dual_max)
        self.dual_lr = check_range("dual_lr", self.dual_lr, 0.0, 1e3)
        self.dual_kp = check_range("dual_kp", self.dual_kp, 0.0, 1e3)
        if self.dual_batch is not None and (not isinstance(self.dual_batch, (int, np.integer)) or self.dual_batch < 1):
            raise ValueError(f"dual_batch must be an integer >= 1, got {self.dual_batch!r}")
        budget_range = BudgetRange.parse(self.budget)
        if budget_range is None:
            self.budget = check_range("budget", self.budget, 0.0, 1.0, low_open=True)
        else:  # written back in the form JSON keeps (env_spec.json, run.json)
            self.budget = budget_range.to_json()
        if self.budget_action is not None:
            check_keyword_choice("budget_action", self.budget_action, BUDGET_ACTIONS)
        if (not isinstance(self.dual_bins, (int, np.integer)) or isinstance(self.dual_bins, bool)
                or not 1 <= self.dual_bins <= 1000):
            raise ValueError(f"dual_bins must be an integer in [1, 1000], got {self.dual_bins!r}")
        self.tradeoff_rate = check_range("tradeoff_rate", self.tradeoff_rate, 0.0, 1.0)
        check_keyword_choice("runtime_order", self.runtime_order, RUNTIME_ORDERS)
        self.count_multiple = check_multiple(self.count_multiple)
        self.alpha = check_range("alpha", self.alpha, 0.0, 1.0, low_open=True)
        self.alpha_budget = check_range("alpha_budget", self.alpha_budget, 0.0, 1e3)
        self.loss_lambda = check_range("loss_lambda", self.loss_lambda, 0.0, 1.0)
        if not isinstance(self.loss_batch, (int, np.integer)) or isinstance(self.loss_batch, bool) or self.loss_batch < 1:
            raise ValueError(f"loss_batch must be an integer >= 1, got {self.loss_batch!r}")
        if not isinstance(self.encoding_dim, (int, np.integer)) or isinstance(self.encoding_dim, bool) or self.encoding_dim < 1:
            raise ValueError(f"encoding_dim must be an integer >= 1, got {self.encoding_dim!r}")
        if self.width is not None:
            self.width = check_range("width", self.width, 0.0, 16.0, low_open=True)
        check_device("device", self.device)


def _load_network(cfg: TaskConfig) -> tuple[GatedNet, Any]:
    """The network and the dataset (a name, ``"imagefolder:PATH"`` or a Dataset) it goes with."""
    from prune_env.checkpoint import check_input_shape, load_checkpoint
    from prune_env.nets.models import build_model, is_backbone, model_label
    from prune_env.own_data import is_own_dataset

    checkpoint = cfg.checkpoint
    if checkpoint is None and cfg.model in (None, "digitnet") and cfg.dataset in (None, "digits") and cfg.width is None:
        from prune_env.assets import default_checkpoint_path

        checkpoint = default_checkpoint_path()
    if checkpoint is None and cfg.model in (None, "mcifarnet") and cfg.dataset == "fashion-mnist" and cfg.width is None:
        from prune_env.assets import fashion_mnist_checkpoint_path

        checkpoint = fashion_mnist_checkpoint_path()  # the shipped network, where it is installed
    if checkpoint is not None:
        net, payload = load_checkpoint(checkpoint, device=cfg.device, models=() if is_backbone(cfg.model) else (cfg.model,))
        if is_backbone(cfg.model) and cfg.model is not None and cfg.model != net.config.get("name"):
            raise ValueError(f"model={cfg.model!r} but checkpoint {str(checkpoint)!r} holds {net.config.get('name')!r}")
        if cfg.dataset is not None and not is_own_dataset(cfg.dataset):
            check_input_shape(checkpoint, payload, cfg.dataset, cfg.data_root)
        return net, cfg.dataset if cfg.dataset is not None else payload.get("dataset", "digits")
    dataset = cfg.dataset if cfg.dataset is not None else "digits"
    from prune_env.data import load_dataset

    splits = load_dataset(dataset, cfg.data_root, download=cfg.download)
    warnings.warn(f"no checkpoint given: {model_label(cfg.model)} is randomly initialised (fine for tests and timing, "
                  "not for results)", stacklevel=2)
    net = build_model(cfg.model, num_classes=splits.num_classes, input_shape=tuple(splits.input_shape), width=cfg.width)
    return net.to(cfg.device), dataset


class PruningTask:
    """The network, data, costs, budgets, observation encoders and reward scale of an environment."""

    def __init__(self, cfg: TaskConfig, *, calibration_size: int = 256):
        from prune_env.data import load_dataset

        cfg.validate()
        self.cfg = cfg
        self.device = torch.device(cfg.device)
        from prune_env.own_data import dataset_label

        self.net, self.dataset = _load_network(cfg)
        #: the dataset's name (a Dataset object's class name): what records and checkpoints store
        self.dataset_name = dataset_label(self.dataset)
        self.net.eval().configure(gating=True, runtime_order=cfg.runtime_order, count_multiple=cfg.count_multiple)
        self.tradeoff_rate = cfg.tradeoff_rate  # configures the network's masks too
        for p in self.net.parameters():
            p.requires_grad_(False)
        splits = self._splits = load_dataset(self.dataset, cfg.data_root, download=cfg.download)
        self.num_classes = splits.num_classes
        self.source = ImageSource(task_split(splits, cfg.split), self.device)
        self.input_shape = self.source.image_shape
        self.costs = CostModel(self.net, self.input_shape)
        self.num_layers = self.net.num_layers
        self.channels = torch.tensor(self.net.channels)
        self.in_channels = list(self.net.in_channels)
        self._layer_geometry = self._static_layer_features()
        #: the range episodes draw their budgets from (None: one budget, ``cfg.budget``)
        self.budget_range = BudgetRange.parse(cfg.budget)
        self._set_budget(cfg.budget if self.budget_range is None else self.budget_range.reference)
        #: relative actions: the budget value an action of the agent's reference keep ratio stands for
        self.action_reference = (self.budget_value if self.budget_range is not None and self.budget_action != "absolute"
                                 else None)
        self._build_encoders(calibration_size)
        #: the difficulty signal of ``observation="...+confidence"`` (None otherwise)
        self.probes = self._fit_probes() if self.confidence_signal else None

    @property
    def budget_action(self) -> str:
        """``"relative"``, ``"scaled"`` or ``"absolute"`` (``cfg.budget_action``; unset: relative for a budget range)."""
        if self.cfg.budget_action is not None:
            return self.cfg.budget_action
        return "relative" if BudgetRange.parse(self.cfg.budget) is not None else "absolute"

    def action_shift(self, values: np.ndarray, resource: str = "macs") -> np.ndarray | None:
        """What relative actions add to the agent's action for episodes of budget ``values`` ``(B,)``:
        ``kappa(b) - kappa(b_ref)``, ``kappa`` the uniform runtime (``resource="macs"``) or static
        (``"params"``) keep ratio of a budget and ``b_ref`` the range's reference; None with absolute
        actions (one budget, or ``budget_action="absolute"``).

        An untrained agent whose actions sit at the reference keep ratio then prunes every episode
        uniformly at its own budget, as a one-budget agent starts at its budget's keep ratio; the
        agent learns offsets from there (a residual on the uniform policy). The environments apply
        the shift; outside them (:meth:`rollout`, evaluation, deployment) the agent's policy carries
        it: :func:`prune_env.evaluation.at_budget.budgeted_policy`.
        """
        if self.action_reference is None or self.budget_action != "relative":
            return None
        kappa, reference = self._kappas(values, resource)
        return kappa - reference

    def action_scale(self, values: np.ndarray, resource: str = "macs") -> np.ndarray | None:
        """What ``budget_action="scaled"`` multiplies the agent's action by for episodes of budget
        ``values`` ``(B,)``: ``kappa(b) / kappa(b_ref)`` (as :meth:`action_shift`); None otherwise.

        The agent's action is then a keep ratio *relative to the budget's*: the same action spends
        about the same fraction of every budget (MACs grow about as the square of the keep ratio, so an
        additive offset spends a larger fraction of a small budget than of a large one), and one
        ``lambda`` per bin prices the bin's budgets alike.
        """
        if self.action_reference is None or self.budget_action != "scaled":
            return None
        kappa, reference = self._kappas(values, resource)
        return kappa / reference

    def action_transform(self, values: np.ndarray, resource: str = "macs") -> tuple[np.ndarray, np.ndarray] | None:
        """``(scale, shift)`` per episode, the keep ratio applied being ``action * scale + shift``
        (:meth:`action_shift`, :meth:`action_scale`); None with absolute actions."""
        if self.action_reference is None:
            return None
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        scale, shift = self.action_scale(values, resource), self.action_shift(values, resource)
        return (np.ones_like(values) if scale is None else scale), (np.zeros_like(values) if shift is None else shift)

    def _kappas(self, values: np.ndarray, resource: str) -> tuple[np.ndarray, float]:
        """The uniform keep ratios of budgets ``values`` and of the range's reference."""
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        if self.cfg.budget_kind == "sparsity":
            return values, float(self.action_reference)
        keep = self.keep_ratio_of if resource == "macs" else self.static_keep_ratio_of
        return np.array([keep(v) for v in values]), keep(self.action_reference)

    def _set_budget(self, value: float) -> None:
        """``budget_value``, ``macs_budget`` and ``params_budget`` of one budget ``value``."""
        #: the budget as given (a range: its reference, the middle), in the units of ``budget_kind``
        self.budget_value = float(value)
        if self.cfg.budget_kind == "sparsity":
            # the MAC budget: every layer keeps ceil(s C) channels; the parameter budget: every layer
            # stores what a static keep ratio s removes for good under this R_r (Sec. 3.4), so that
            # the budget is reachable for any R_r (with R_r = 0 it is the s-uniform network's)
            self.macs_budget = self.costs.macs_budget(value)
            uniform = np.full((1, self.num_layers), value)
            self.params_budget = float(self.costs.params_ratio(self.stored_counts(uniform)[0]))
        else:
            self.macs_budget = self.params_budget = value

    # ------------------------------------------------------------------ the owner of R_r and of the budget
    @property
    def tradeoff_rate(self) -> float:
        """``R_r``: one value for the masks (the network's gate) and the stored-parameter count."""
        return self.cfg.tradeoff_rate

    @tradeoff_rate.setter
    def tradeoff_rate(self, rate: float) -> None:
        self.cfg.tradeoff_rate = check_range("tradeoff_rate", rate, 0.0, 1.0)
        self.net.configure(tradeoff_rate=self.cfg.tradeoff_rate)

    @contextlib.contextmanager
    def at_tradeoff_rate(self, rate: float) -> Iterator["PruningTask"]:
        """Temporarily use another ``R_r`` (masks and stored parameters alike)."""
        saved = self.tradeoff_rate
        self.tradeoff_rate = rate
        try:
            yield self
        finally:
            self.tradeoff_rate = saved

    def uniform_keep_ratio(self, macs_budget: float | None = None) -> float:
        """The largest uniform runtime keep ratio whose MAC ratio meets ``macs_budget`` (default: the task's)."""
        budget = self.macs_budget if macs_budget is None else float(macs_budget)
        return _largest_meeting(lambda r: self.costs.macs_budget(r), budget, self.cfg.alpha)

    def uniform_static_ratio(self, params_budget: float | None = None) -> float:
        """The largest uniform static keep ratio whose stored-parameter ratio (under this ``R_r``)
        meets ``params_budget`` (default: the task's); ``alpha`` when even ``alpha`` does not."""
        budget = self.params_budget if params_budget is None else float(params_budget)

        def params(ratio: float) -> float:
            stored = self.stored_counts(np.full((1, self.num_layers), ratio))
            return float(self.costs.params_ratio(stored)[0])

        return _largest_meeting(params, budget, self.cfg.alpha)

    @property
    def budget_keep_ratio(self) -> float:
        """The uniform runtime keep ratio the MAC budget stands for: ``budget`` itself for a
        sparsity, found by bisection for a fraction of dense MACs (a range: at its reference)."""
        return self.keep_ratio_of(self.budget_value)

    @property
    def static_budget_keep_ratio(self) -> float:
        """The uniform static keep ratio the parameter budget stands for (as :attr:`budget_keep_ratio`)."""
        return self.static_keep_ratio_of(self.budget_value)

    # ------------------------------------------------------------------ budgets drawn per episode
    def keep_ratio_of(self, value: float) -> float:
        """The uniform runtime keep ratio a budget ``value`` (in ``budget_kind`` units) stands for."""
        if self.cfg.budget_kind == "sparsity":
            return float(value)
        return self.uniform_keep_ratio(self.costs_of(np.array([value]))[0][0])

    def static_keep_ratio_of(self, value: float) -> float:
        """The uniform static keep ratio a budget ``value`` stands for."""
        if self.cfg.budget_kind == "sparsity":
            return float(value)
        return self.uniform_static_ratio(self.costs_of(np.array([value]))[1][0])

    def costs_of(self, values: np.ndarray, *, params: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """``(macs_budgets, params_budgets)`` of budget values ``(B,)``: what :meth:`_set_budget` gives
        for one value, for many at once (``params=False`` skips the parameter budgets)."""
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        if self.cfg.budget_kind != "sparsity":
            return values.copy(), (values.copy() if params else None)
        from prune_env.nets.masks import keep_count

        ratios = torch.as_tensor(values)[:, None].expand(-1, self.num_layers)
        counts = torch.stack([keep_count(ratios[:, t], int(c)) for t, c in enumerate(self.channels)], 1)
        macs = self.costs.macs_ratio(counts).numpy()
        if not params:
            return macs, None
        stored = self.stored_counts(np.repeat(values[:, None], self.num_layers, 1))
        return macs, np.asarray(self.costs.params_ratio(stored), dtype=np.float64).reshape(-1)

    @property
    def num_budget_bins(self) -> int:
        """Bins of the budget range (each with its own ``beta`` and ``lambda``); 1 for one budget."""
        return 1 if self.budget_range is None else self.budget_range.num_bins(self.cfg.dual_bins)

    def budget_bins(self, values: np.ndarray) -> np.ndarray:
        """The bin of each budget value ``(B,)``."""
        return self.budget_range.bin_of(values, self.num_budget_bins)

    def check_budget(self, value: Any, name: str = "budget") -> float:
        """``value`` as a float when this task's agents were trained for it (inside the range, or the
        one budget); a ValueError naming ``name`` and the range otherwise."""
        if self.budget_range is not None:
            return self.budget_range.check(value, name)
        v = check_range(name, value, 0.0, 1.0, low_open=True)
        return v

    @contextlib.contextmanager
    def at_budget(self, value: float, *, check: bool = True) -> Iterator["PruningTask"]:
        """Temporarily one budget ``value`` (observations, references, ``macs_budget``): an any-budget
        agent evaluated or deployed at ``value``. With ``check``, a value outside the range the task
        was built with is a ValueError (:meth:`check_budget`); a one-budget task accepts any value."""
        if check and self.budget_range is not None:
            value = self.budget_range.check(value)
        value = check_range("budget", value, 0.0, 1.0, low_open=True)
        saved = (self.cfg.budget, self.budget_range, self.budget_value, self.macs_budget, self.params_budget)
        self.cfg.budget, self.budget_range = value, None
        self._set_budget(value)
        try:
            yield self
        finally:
            (self.cfg.budget, self.budget_range, self.budget_value, self.macs_budget, self.params_budget) = saved

    # ------------------------------------------------------------------ observations
    @property
    def observation_base(self) -> str:
        """How the pooled features are given: ``"encoded"`` or ``"raw"`` (the mode without ``+confidence``)."""
        return self.cfg.observation.split("+")[0]

    @property
    def confidence_signal(self) -> bool:
        """Whether the runtime observation carries the confidence probes' features (:mod:`prune_env.envs.difficulty`)."""
        return self.cfg.observation.endswith("+confidence")

    @property
    def feature_width(self) -> int:
        """``W``: the width of the pooled-feature part of the runtime observation."""
        return self.cfg.encoding_dim if self.observation_base == "encoded" else max(self.in_channels)

    @property
    def runtime_obs_dim(self) -> int:
        extra = len(CONFIDENCE_FEATURES) if self.confidence_signal else 0
        return self.feature_width + self.num_layers + extra + 2

    def _fit_probes(self) -> ConfidenceProbes:
        """The confidence probes, fitted on up to :data:`PROBE_IMAGES` training images (a fixed subset)."""
        train = ImageSource(task_split(self._splits, "train"), self.device)
        n = len(train)
        indices = np.arange(n) if n <= PROBE_IMAGES else np.sort(
            np.random.default_rng(0).choice(n, size=PROBE_IMAGES, replace=False))
        images, labels = train.get(indices)
        return ConfidenceProbes.fit(self.net, images, labels, low=max(self.cfg.alpha, 0.2), seed=0)

    @property
    def static_obs_dim(self) -> int:
        return self._layer_geometry.shape[1] + self.num_layers + 2

    def _calibration_batch(self, size: int) -> tuple[Tensor, Tensor]:
        """The first ``size`` validation images: whatever split the task serves, encoders and the
        reward scale are calibrated on the same images, so a policy sees the same observations in
        training (val) and evaluation (test)."""
        if self.cfg.split == "val":
            return self.source.get(np.arange(min(size, len(self.source))))
        val = self._splits.val
        items = [val[i] for i in range(min(size, len(val)))]
        return torch.stack([x for x, _ in items]).to(self.device), torch.tensor([y for _, y in items], device=self.device)

    def _build_encoders(self, calibration_size: int) -> None:
        """Per-layer standardisation (from a calibration batch) and fixed projections to ``encoding_dim``."""
        images, labels = self._calibration_batch(calibration_size)
        with torch.no_grad():
            state = self.net.begin(images)
            pooled = []
            for _ in range(self.num_layers):
                pooled.append(state.pooled)
                state = self.net.step(state, 1.0, 1.0)
        self._mean = [p.mean(0) for p in pooled]
        self._std = [p.std(0, unbiased=False).clamp_min(1e-6) for p in pooled]
        d = self.cfg.encoding_dim
        self._projections = []
        for t, c in enumerate(self.in_channels):
            if c <= d:
                proj = torch.eye(c, d)  # lossless: zero-padding to the fixed width
            else:
                g = torch.Generator().manual_seed(10_007 + t)
                proj = torch.randn(c, d, generator=g) / math.sqrt(d)  # a fixed random projection (JL)
            self._projections.append(proj.to(self.device))
        self.calibration_images, self.calibration_labels = images, labels

    def encode_pooled(self, pooled: Tensor, t: int) -> Tensor:
        """The layer-dependent encoding of ``GAP(F_in)`` of layer ``t`` to a fixed width."""
        if self.observation_base == "raw":
            return F.pad(pooled, (0, max(self.in_channels) - pooled.shape[1]))
        return ((pooled - self._mean[t]) / self._std[t]) @ self._projections[t]

    def macs_so_far(self, kept: Tensor, t: int) -> Tensor:
        """Per-sample MAC ratio if layers ``t..L-1`` kept every channel (``(B,)`` float64)."""
        counts = kept.cpu().clone()
        counts[:, t:] = self.channels[t:]
        return self.costs.macs_ratio(counts)

    def runtime_observation(self, state: StepState, budgets: np.ndarray | None = None) -> np.ndarray:
        """What the runtime agent sees before layer ``state.t`` (after the last layer: a terminal vector).

        ``[encoded GAP(F_in) | one-hot layer index | (probe confidence) | MAC ratio so far (rest dense) |
        MAC budget]``; ``budgets`` ``(B,)``: each episode's MAC budget (default: the task's).
        """
        batch, t, layers = state.kept.shape[0], state.t, self.num_layers
        out = np.zeros((batch, self.runtime_obs_dim), dtype=np.float32)
        width = self.feature_width
        if t < layers:
            out[:, :width] = self.encode_pooled(state.pooled, t).cpu().numpy()
            out[:, width + t] = 1.0
            if self.probes is not None:
                out[:, width + layers: width + layers + len(CONFIDENCE_FEATURES)] = (
                    self.probes.features(state.pooled, t).cpu().numpy())
        out[:, -2] = self.macs_so_far(state.kept, t).numpy()
        out[:, -1] = self.macs_budget if budgets is None else budgets
        return out

    def _static_layer_features(self) -> np.ndarray:
        """``(L, 7)``: the layer's output shape, input channels, stride and share of MACs and parameters."""
        convs = {e.out_layer: e for e in self.costs.entries if e.kind == "conv" and e.out_layer >= 0}
        c_max = float(max(self.net.channels + self.in_channels))
        hw_max = float(max(math.isqrt(convs[t].spatial) for t in range(self.num_layers)))
        rows = []
        for t, layer in enumerate(self.net.layers):
            e = convs[t]
            side = math.isqrt(e.spatial)
            ones = torch.ones(())
            rows.append([
                e.out_channels / c_max, side / hw_max, e.spatial / hw_max**2, e.in_channels / c_max,
                layer.conv.stride[0] / 2.0,
                float(e.macs(ones * e.in_channels, ones * e.out_channels)) / self.costs.dense_macs,
                float(e.params(ones * e.in_channels, ones * e.out_channels)) / self.costs.dense_params,
            ])
        return np.asarray(rows, dtype=np.float32)

    def params_so_far(self, static_ratios: np.ndarray, t: int) -> np.ndarray:
        """Per-episode stored-parameter ratio if layers ``t..L-1`` were kept whole: ``(B,)``."""
        stored = self.stored_counts(static_ratios, upto=t)
        return np.asarray(self.costs.params_ratio(stored), dtype=np.float64).reshape(-1)

    def static_observation(self, static_ratios: np.ndarray, t: int, budgets: np.ndarray | None = None) -> np.ndarray:
        """What the static agent sees before layer ``t``, for a batch of episodes ``(B, D)``.

        ``[layer shape features | one-hot layer index | parameter ratio so far | parameter budget]``;
        ``budgets`` ``(B,)``: each episode's parameter budget (default: the task's).
        """
        batch = static_ratios.shape[0]
        onehot = np.zeros((batch, self.num_layers), dtype=np.float32)
        if t < self.num_layers:
            geometry = np.repeat(self._layer_geometry[t : t + 1], batch, 0)
            onehot[:, t] = 1.0
        else:
            geometry = np.zeros((batch, self._layer_geometry.shape[1]), dtype=np.float32)
        budget = np.full(batch, self.params_budget) if budgets is None else np.asarray(budgets, dtype=np.float64)
        progress = np.stack([self.params_so_far(static_ratios, t), budget], 1)
        return np.concatenate([geometry, onehot, progress.astype(np.float32)], 1)

    # ------------------------------------------------------------------ costs of static choices
    def stored_counts(self, static_ratios: np.ndarray, upto: int | None = None) -> Tensor:
        """``(B, L)`` channels stored per layer after removing the permanent sets (Sec. 3.4).

        Layers from ``upto`` on are counted whole.
        """
        from prune_env.nets.masks import permanent_count

        ratios = torch.as_tensor(np.asarray(static_ratios, dtype=np.float64)).reshape(-1, self.num_layers)
        removed = torch.stack([permanent_count(ratios[:, t], self.tradeoff_rate, int(c)) for t, c in enumerate(self.channels)], 1)
        stored = self.channels.unsqueeze(0) - removed
        if upto is not None:
            stored[:, upto:] = self.channels[upto:]
        return stored

    # ------------------------------------------------------------------ running policies
    def clip(self, ratios: np.ndarray) -> np.ndarray:
        """Keep ratios clipped to ``[alpha, 1]``; NaN or inf is a ValueError, a non-number a TypeError."""
        ratios = as_keep_ratios(ratios)
        if not np.all(np.isfinite(ratios)):
            raise ValueError(f"action must be finite, got {ratios.reshape(-1).tolist()}")
        return np.clip(ratios, self.cfg.alpha, 1.0)

    @staticmethod
    def single_action(action: Any) -> np.ndarray:
        """One environment's action as a ``(1, 1)`` batch, or a TypeError / ValueError naming what was wrong."""
        action = as_keep_ratios(action).reshape(-1)
        if action.shape != (1,):
            raise ValueError(f"action must hold one keep ratio, got shape {np.shape(action)}")
        return action[None]

    def static_ratios_of(self, policy: Any) -> np.ndarray:
        """The ``(L,)`` static keep ratios a static policy chooses (deterministic, input-independent)."""
        policy = as_policy(policy, self.num_layers, "static_policy")
        policy.reset(1)
        ratios = np.ones((1, self.num_layers))
        for t in range(self.num_layers):
            ratios[0, t] = self.clip(policy(self.static_observation(ratios, t)))[0]
        return ratios[0]

    def rollout(self, images: Tensor, runtime_policy: KeepRatioPolicy | Any, static_ratios: Any) -> StepState:
        """Run images through the network, the runtime policy choosing each layer's keep ratio.

        ``static_ratios`` is ``(L,)`` (shared) or ``(B, L)`` (per image). Gradients flow when enabled
        by the caller (fine-tuning under frozen agents); the policy sees detached observations.
        """
        policy = as_policy(runtime_policy, self.num_layers)
        static = torch.as_tensor(np.asarray(static_ratios, dtype=np.float64))
        policy.reset(images.shape[0])
        state = self.net.begin(images)
        for t in range(self.num_layers):
            with torch.no_grad():
                obs = self.runtime_observation(StepState(None, t, state.pooled.detach(), state.kept))
            d_r = torch.as_tensor(self.clip(policy(obs)), device=images.device)
            d_s = static[t].item() if static.dim() == 1 else static[:, t].to(images.device)
            state = self.net.step(state, d_r, d_s)
        return state

    def losses(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Per-sample cross entropy."""
        return F.cross_entropy(logits, labels, reduction="none")

    @property
    def loss_scale(self) -> str:
        """``"moving"`` (Eq. 9) or ``"fixed"`` (:func:`~prune_env.envs.reward.resolved_loss_scale`)."""
        return resolved_loss_scale(self.cfg)

    def calibration_loss(self, runtime_ratios: Any, static_ratios: Any) -> float:
        """The mean cross entropy of the calibration images at the given keep ratios."""
        with torch.no_grad():
            logits = self.net(self.calibration_images, runtime_ratios, static_ratios)
            return float(self.losses(logits, self.calibration_labels).mean())

    def calibrated_normalizer(self, runtime_ratios: Any, static_ratios: Any) -> LossNormalizer:
        """A :class:`LossNormalizer` whose ``beta0`` is the mean calibration loss at the given ratios
        (frozen there when the loss scale is ``"fixed"``)."""
        return make_normalizer(self.cfg, self.calibration_loss(runtime_ratios, static_ratios))

    def calibrated_dual(self, budget: float, beta0: float, slope: Callable[[float], tuple[float, float]],
                        keep_ratio: float) -> DualVariable | None:
        """The average budget's :class:`DualVariable` (None under ``budget_mode="per_input"``).

        Unless ``dual_init`` is given, ``lambda`` starts where the uniform network at the budget
        would be a stationary point of ``-L / beta0 - lambda (B - B_bar) / B_bar``:
        ``lambda0 = -B_bar (dL / dB) / beta0``, the loss-per-cost slope measured by ``slope``
        (keep ratio -> (mean calibration loss, mean cost ratio)) at ``keep_ratio +- 0.1``.
        """
        if self.cfg.budget_mode != "average":
            return None
        return make_dual(self.cfg, budget, self.dual_init_at(budget, beta0, slope, keep_ratio))

    def dual_init_at(self, budget: float, beta0: float, slope: Callable[[float], tuple[float, float]],
                     keep_ratio: float) -> float:
        """``dual_init``, or unset the calibrated ``lambda0`` of :meth:`calibrated_dual` at ``budget``."""
        cfg = self.cfg
        if cfg.dual_init is not None:
            return cfg.dual_init
        lo, hi = max(cfg.alpha, keep_ratio - 0.1), min(1.0, keep_ratio + 0.1)
        (loss_lo, cost_lo), (loss_hi, cost_hi) = slope(lo), slope(hi)
        rate = (loss_lo - loss_hi) / max(cost_hi - cost_lo, 1e-9)
        return min(max(budget * rate / beta0, 0.0), cfg.dual_max)

    def binned_reward_state(self, normalizer_at: Callable[[float], LossNormalizer], cost_of: Callable[[float], float],
                            keep_ratio_of: Callable[[float], float], slope: Callable[[float], tuple[float, float]],
                            ) -> tuple[BinnedLossNormalizer, BinnedDual | None]:
        """The reward state of a budget range: ``beta`` and (average budget) ``lambda`` per budget bin,
        each calibrated as a one-budget environment's at the bin's centre ``c``: ``normalizer_at(c)``
        (``beta0``), and ``lambda0`` from ``slope`` at ``keep_ratio_of(c)`` with the cost budget
        ``cost_of(c)`` (:meth:`dual_init_at`)."""
        cfg = self.cfg
        centers = self.budget_range.centers(self.num_budget_bins)
        normalizers = [normalizer_at(float(c)) for c in centers]
        dual = None
        if cfg.budget_mode == "average":
            inits = [self.dual_init_at(cost_of(float(c)), n.beta, slope, keep_ratio_of(float(c)))
                     for c, n in zip(centers, normalizers)]
            dual = make_binned_dual(cfg, inits, centers)
        return BinnedLossNormalizer(normalizers, centers), dual

    def budget_reward(self, cost: np.ndarray, budget: float | np.ndarray, dual: DualVariable | BinnedDual | None,
                      bins: np.ndarray | None = None) -> np.ndarray:
        """``R_bud`` of finished episodes under this task's budget mode and penalty
        (:func:`~prune_env.envs.reward.budget_term`)."""
        return budget_term(self.cfg, cost, budget, dual, bins)
