"""``RuntimePrune-v0``: choose each layer's keep ratio for one input image (paper Sec. 3.3.1)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from prune_env.envs.budgets import budget_stream
from prune_env.envs.reward import TerminalReward, episode_return, step_reward, terminal_reward
from prune_env.envs.reward_state import RewardStateMixin, shared_binned_state
from prune_env.envs.task import PruningTask, TaskConfig
from prune_env.rewards import BinnedDual, BinnedLossNormalizer, DualVariable, LossNormalizer


class EpisodeBudgets:
    """The budgets of a batch of episodes: one for all (``values`` None), or each its own.

    Attributes:
        values: ``(B,)`` each episode's budget as drawn (``budget_kind`` units), or None.
        costs: ``(B,)`` each episode's cost budget (MAC or parameter fraction), or None.
        bins: ``(B,)`` each episode's budget bin (its ``beta`` and ``lambda``), or None.
        transform: ``(scale, shift)``, each ``(B,)``: the keep ratio applied is ``action * scale + shift``
            (relative or scaled actions, :meth:`~prune_env.envs.task.PruningTask.action_transform`), or None.
    """

    def __init__(self, task: PruningTask, values: np.ndarray | None, resource: str):
        self.values = self.costs = self.bins = self.transform = None
        if values is not None:
            self.values = np.asarray(values, dtype=np.float64).reshape(-1)
            macs, params = task.costs_of(self.values, params=resource == "params")
            self.costs = params if resource == "params" else macs
            self.bins = task.budget_bins(self.values)
            self.transform = task.action_transform(self.values, resource)

    def applied(self, actions: np.ndarray) -> np.ndarray:
        """The episodes' actions ``(B,)`` as the keep ratios to apply (before clipping)."""
        if self.transform is None:
            return actions
        scale, shift = self.transform
        return actions * scale + shift

    def of(self, default: float) -> float | np.ndarray:
        """Each episode's cost budget, or ``default`` (the task's) when they share one."""
        return default if self.costs is None else self.costs


class RuntimeEpisodes:
    """A batch of runtime episodes run in lockstep: one batched layer computation per step.

    The single environment runs a batch of one; the batched VecEnv a batch of ``n_envs``.
    """

    def __init__(self, task: PruningTask, static_ratios: np.ndarray, normalizer: LossNormalizer,
                 dual: DualVariable | None = None):
        self.task = task
        self.normalizer = normalizer
        self.dual = dual
        self.set_static_ratios(static_ratios)
        self.state = None
        self.budgets = EpisodeBudgets(task, None, "macs")
        self._previous: np.ndarray | None = None  # the return so far (reward="dense")

    def set_static_ratios(self, static_ratios: np.ndarray) -> None:
        """Use new static keep ratios from the next layer on (episodes in flight finish under them)."""
        self.static_ratios = np.asarray(static_ratios, dtype=np.float64)
        stored = self.task.stored_counts(self.static_ratios)
        self.params_ratio = float(self.task.costs.params_ratio(stored[0]))

    @property
    def t(self) -> int:
        return self.state.t

    def start(self, indices: np.ndarray, budgets: np.ndarray | None = None) -> np.ndarray:
        """Begin one episode per image index; returns the observations of layer 0.

        ``budgets``: each episode's budget value, drawn from the task's range (None: the task's one budget).
        """
        task = self.task
        self.budgets = EpisodeBudgets(task, budgets, "macs")
        self.indices = np.asarray(indices, dtype=np.int64)
        images, self.labels = task.source.get(self.indices)
        self.actions = np.zeros((len(self.indices), task.num_layers))
        with torch.no_grad():
            self.state = task.net.begin(images)
            if task.cfg.reward == "dense":
                self._previous = self._lookahead_return(self.state)
        return task.runtime_observation(self.state, self.budgets.costs)

    def _lookahead_return(self, state) -> np.ndarray:
        """``R_acc + R_bud`` of the network pruned as chosen so far and runtime-dense after (dense mode)."""
        task = self.task
        while not state.done:
            state = task.net.step(state, 1.0, float(self.static_ratios[state.t]))
        losses = task.losses(state.logits, self.labels).cpu().numpy()
        macs = task.costs.macs_ratio(state.kept).numpy()
        budgets = self.budgets
        return episode_return(task.cfg, self.normalizer, self.dual, losses, macs, budgets.of(task.macs_budget), budgets.bins)

    def advance(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool, list[dict] | None]:
        """Apply one keep ratio per episode to the current layer.

        Returns ``(observations, rewards, terminated, infos)``; before the last layer ``infos`` is
        None (nothing to report), after it the observations are terminal vectors and ``infos``
        holds one new dict of the episode's results per episode.
        """
        task, t = self.task, self.state.t
        ratios = task.clip(self.budgets.applied(np.asarray(actions, dtype=np.float64).reshape(len(self.indices), -1)[:, 0]))
        self.actions[:, t] = ratios
        with torch.no_grad():
            self.state = task.net.step(self.state, torch.as_tensor(ratios, device=task.device), float(self.static_ratios[t]))
            observations = task.runtime_observation(self.state, self.budgets.costs)
            if not self.state.done:
                rewards = np.zeros(len(self.indices))
                if task.cfg.reward == "dense":
                    current = self._lookahead_return(self.state)
                    rewards, self._previous = step_reward(task.cfg, current, self._previous), current
                return observations, rewards, False, None
            return observations, *self._finish()

    def _finish(self) -> tuple[np.ndarray, bool, list[dict]]:
        task, state = self.task, self.state
        losses = task.losses(state.logits, self.labels).cpu().numpy()
        correct = (state.logits.argmax(1) == self.labels).cpu().numpy()
        macs = task.costs.macs_ratio(state.kept).numpy()
        budget = self.budgets.of(task.macs_budget)
        reward = terminal_reward(task.cfg, self.normalizer, self.dual, losses, macs, budget, self.budgets.bins)
        rewards = step_reward(task.cfg, reward.total, self._previous)
        keep = (state.kept.cpu().double() / task.channels.double()).numpy()
        within = macs <= budget + 1e-9
        return rewards, True, self._infos(losses, correct.astype(np.int64), macs, within, keep, reward)

    def _infos(self, losses: np.ndarray, correct: np.ndarray, macs: np.ndarray, within: np.ndarray, keep: np.ndarray,
               reward: TerminalReward) -> list[dict]:
        """One info dict per episode, built from whole columns (``tolist`` gives Python scalars)."""
        params, n = self.params_ratio, len(self.indices)
        budgets = self.budgets
        costs = [self.task.macs_budget] * n if budgets.costs is None else budgets.costs.tolist()
        columns = zip(self.indices.tolist(), losses.tolist(), correct.tolist(), macs.tolist(), within.tolist(),
                      keep.tolist(), self.actions.tolist(), reward.accuracy.tolist(), reward.budget.tolist(), costs,
                      reward.betas, reward.lams)
        infos = [
            {
                "index": index, "loss": loss, "correct": ok, "macs_ratio": mac, "params_ratio": params,
                "budget": budget, "within_budget": inside, "keep_ratios": kept, "actions": acts,
                "reward_acc": acc, "reward_budget": bud, "beta": beta, "lambda": lam,
            }
            for index, loss, ok, mac, inside, kept, acts, acc, bud, budget, beta, lam in columns
        ]
        if budgets.values is not None:  # a budget range: the budget as drawn, in budget_kind units
            for info, value in zip(infos, budgets.values.tolist()):
                info["budget_value"] = value
        return infos


def pick_budget(env: gym.Env, options: dict | None) -> float | None:
    """The budget value of ``env``'s next episode (``RuntimePrune-v0`` and ``StaticPrune-v0`` alike).

    ``options["budget"]`` chooses it (inside the range); otherwise it is drawn from
    :func:`~prune_env.envs.budgets.budget_stream` of ``env.np_random`` (re-derived whenever the
    generator is replaced, e.g. by ``reset(seed=...)``). None for a one-budget environment.
    """
    budget_range = env.task.budget_range
    if options and "budget" in options:
        if budget_range is None:
            raise ValueError(f"options['budget']: this environment has one budget (budget={env.task.cfg.budget!r}); "
                             f"build it with a range (e.g. budget='0.3:0.7') to choose the budget per episode")
        return budget_range.check(options["budget"], "options['budget']")
    if budget_range is None:
        return None
    rng = env.np_random
    if env._budget_source is None or env._budget_source[0] is not rng:
        env._budget_source = (rng, budget_stream(rng))
    return budget_range.sample(env._budget_source[1])


class RuntimePruneEnv(RewardStateMixin, gym.Env):
    """Runtime channel pruning of one input image, one prunable layer per step.

    ## Description
    A trained CNN with learnable channel importance (paper Sec. 3.1-3.2) processes one image.
    Before each prunable layer ``t`` the agent observes the layer's pooled input features and
    picks the layer's runtime keep ratio ``d_r``; the layer then keeps the
    ``max(1, ceil(d_r C))`` channels of highest predicted importance (merged with the static
    pruning decision by the trade-off pruner, Eq. 3-5).

    ## Action Space
    ``Box(alpha, 1, (1,), float32)``: the relaxed keep ratio, clipped to ``[alpha, 1]`` when
    applied (agents may act on the real line, paper Eq. 13). NaN or inf raises ``ValueError``. With
    a budget range and ``budget_action="relative"`` (its default) the keep ratio applied is the action
    plus the episode budget's uniform keep ratio minus the range reference's; with ``"scaled"``, the
    action times their ratio (see Arguments).

    ## Observation Space
    ``Box(-inf, inf, (W + L + P + 2,), float32)``; ``L`` prunable layers, ``t`` the current one,
    ``P = 3`` with a ``"+confidence"`` observation mode, else 0:

    | index | meaning | range |
    |---|---|---|
    | ``0 .. W-1`` | ``GAP(F_in)`` of layer ``t``, encoded to the fixed width ``W`` (see below) | reals |
    | ``W .. W+L-1`` | one-hot index of layer ``t`` (all 0 in the terminal observation) | {0, 1} |
    | ``W+L .. W+L+P-1`` | ``"+confidence"``: layer ``t``'s probe on ``GAP(F_in)``: top probability, margin, entropy | [0, 1] |
    | ``W+L+P`` | MAC ratio so far of dense, counting layers ``t..L-1`` as dense | [0, 1] |
    | ``W+L+P+1`` | the episode's MAC budget ``B_bar`` as a fraction of dense MACs | (0, 1] |

    ``observation="encoded"`` (``W = encoding_dim``): standardised on a calibration batch, then
    zero-padded or projected by a fixed layer-dependent random matrix. ``observation="raw"``
    (``W = max_t C_in_t``): the raw pooled features zero-padded to the widest layer, for agents
    with their own ``Linear(C_in_t, 128)`` encoders (``LayerEncoderExtractor`` slices by this table).
    ``"encoded+confidence"`` / ``"raw+confidence"`` add a difficulty signal: the confidence of a
    linear probe per layer, fitted on training images when the environment is built
    (:mod:`prune_env.envs.difficulty`; its MACs count as overhead).

    ## Rewards
    Sparse (paper Eq. 11): 0 before the last layer; at the last, ``R_acc + R_bud`` with
    ``R_acc = -L / beta`` (Eq. 7-8, sign corrected), ``L`` the image's cross entropy, ``B`` its MAC
    ratio and ``B_bar`` the budget.

    * ``beta`` (``loss_scale``): ``"moving"``, Eq. 9's moving average over batches of
      ``loss_batch`` episodes with weight ``loss_lambda``; ``"fixed"``, frozen at ``beta0``, the
      calibration loss of the budget's uniform keep ratio. Unset: fixed under the average budget.
    * ``R_bud`` (``budget_mode``):

      - ``"per_input"`` (the paper, Eq. 10 sign corrected): ``-(exp(alpha_budget (B - B_bar)) - 1)``
        when ``B > B_bar``, else 0; with ``penalty="relative"`` the overshoot is ``(B - B_bar) / B_bar``,
        so one ``alpha_budget`` costs alike at every budget level;
      - ``"average"`` (a constrained MDP on the *mean* cost): ``-lambda (B - B_bar) / B_bar``, linear
        in the image's cost, so cheap inputs earn credit that hard ones spend. ``lambda >= 0`` is a
        dual variable shared by every episode, raised or lowered after every ``dual_batch`` finished
        episodes by projected dual ascent with a proportional term (``dual_lr``, ``dual_kp``,
        ``dual_max``; :class:`~prune_env.rewards.DualVariable`), started at ``dual_init`` or, unset,
        at the loss-per-MAC slope of the uniform network at the budget.

    ``beta`` and ``lambda`` of a reward are those of the batches finished before its episode.
    With a budget range (below), ``B_bar`` is the episode's budget and ``beta`` and ``lambda`` are
    those of its budget bin (:class:`~prune_env.rewards.BinnedLossNormalizer`,
    :class:`~prune_env.rewards.BinnedDual`: one per bin, each calibrated at its bin's centre).
    ``reward="dense"``: the per-step change of that return for the network pruned so far and dense
    after (telescoping to the sparse return minus the dense network's), in the spirit of PuRL.
    The reward is assembled in :mod:`prune_env.envs.reward`, for both environments.

    ## Starting State
    An image drawn uniformly from the split with the environment's RNG
    (``reset(options={"index": i})`` picks one). With a budget range, the episode's budget is drawn
    uniformly from it (a set: among its values) with a generator derived from the environment's
    seed (:func:`~prune_env.envs.budgets.budget_stream`; ``options={"budget": b}`` picks one inside
    the range, the reset info holds ``budget_value``). ``reset(seed=s)`` reproduces the images,
    budgets and observations; the rewards also depend on ``beta`` and ``lambda``, which move as episodes
    finish: :meth:`reward_state` / :meth:`set_reward_state` snapshot and restore them.

    ## Episode End
    Terminates after the ``L``-th prunable layer; never truncated. The final ``info`` holds
    ``loss``, ``correct``, ``macs_ratio``, ``params_ratio``, ``budget``, ``within_budget``,
    ``keep_ratios`` (kept fraction per layer), ``actions``, ``reward_acc``, ``reward_budget``,
    ``beta``, ``lambda`` (0 unless the budget is an average) and ``index``; with a budget range also
    ``budget_value`` (the drawn budget in ``budget_kind`` units; ``budget`` is its MAC fraction).

    ## Arguments
    * ``model`` (str, default from the checkpoint, else ``"digitnet"``), ``checkpoint`` (path; with
      neither, the shipped digitnet trained on digits), ``dataset`` (default from the checkpoint),
      ``data_root``, ``download`` (False; True fetches a missing CIFAR-10 / Fashion-MNIST with
      torchvision's download), ``split`` (``"val"``; ``"train"``, the training images without the
      dataset's augmentation; ``"test"``), ``width`` (untrained nets only);
    * ``budget`` (0.5) in (0, 1], read as a uniform keep ratio ("sparsity") or, with
      ``budget_kind="fraction"``, as the fraction of dense MACs; or a range every episode draws its
      budget from: ``"0.3:0.7"`` / ``(0.3, 0.7)`` (uniform in it) or ``[0.3, 0.5, 0.7]`` (among the
      values), one agent for every budget (:mod:`prune_env.envs.budgets`); ``dual_bins`` (5): bins of a
      continuous range, each with its own ``beta`` and ``lambda`` (a set: one bin per value);
      ``budget_action`` (None: ``"relative"`` for a range): ``"relative"`` applies the action plus
      the episode budget's uniform keep ratio minus the range reference's (so one action, the
      reference keep ratio, prunes every episode uniformly at its own budget), ``"scaled"`` the
      action times the episode budget's uniform keep ratio over the reference's (the same action
      spends about the same fraction of every budget), ``"absolute"`` the action itself
      (:meth:`~prune_env.envs.task.PruningTask.action_transform`);
    * ``tradeoff_rate`` ``R_r`` (1.0: pure runtime pruning) in [0, 1]; ``runtime_order``
      (``"importance"``: rank by ``u_r``, the paper's | ``"static"``: rank by ``u_s``, keep sets the
      executor slices); ``count_multiple`` (1): keep counts rounded up to a multiple; ``alpha`` (0.1) in (0, 1];
      ``alpha_budget`` ``alpha_1`` (10.0); ``loss_lambda`` ``lambda`` (0.9); ``loss_batch`` (64);
    * ``budget_mode`` (``"per_input"`` | ``"average"``), ``penalty`` (``"absolute"`` |
      ``"relative"``), ``loss_scale`` (None | ``"moving"`` | ``"fixed"``), ``dual_init`` (None or
      [0, dual_max]), ``dual_lr`` (0.5), ``dual_kp`` (2.0), ``dual_max`` (100), ``dual_batch``
      (None: ``loss_batch``);
    * ``reward`` (``"sparse"`` | ``"dense"``), ``observation`` (``"encoded"`` | ``"raw"`` |
      ``"encoded+confidence"`` | ``"raw+confidence"``),
      ``encoding_dim`` (64), ``device`` (``"cpu"``);
    * ``static_policy``: the static keep ratios used during runtime episodes: None (all 1), a
      number, ``L`` numbers, or a saved static agent / callable on ``StaticPrune-v0`` observations;
    * ``normalizer``, ``dual``: a :class:`~prune_env.rewards.LossNormalizer` / ``DualVariable`` to
      share with other environments (as the batched VecEnv's episodes share one).

    ## Version History
    * v0: the paper's environment; the defaults reproduce it (``budget_mode="per_input"``,
      ``penalty="absolute"``, moving ``beta``). Later additions are keywords whose defaults keep
      v0's rewards bit for bit: ``budget_mode``, ``penalty``, ``loss_scale``, ``dual_*``; budget
      ranges (``budget="0.3:0.7"``, ``dual_bins``; a number keeps v0's behaviour bit for bit).
    """

    metadata = {"render_modes": []}

    def __init__(self, static_policy: Any = None, normalizer: LossNormalizer | BinnedLossNormalizer | None = None,
                 dual: DualVariable | BinnedDual | None = None, **kwargs: Any):
        super().__init__()
        self.task = PruningTask(TaskConfig(**kwargs))
        task = self.task
        self.static_ratios = task.static_ratios_of(static_policy)
        if task.budget_range is None:
            self.normalizer = normalizer or task.calibrated_normalizer(task.budget_keep_ratio, self.static_ratios)
            self.dual = dual or task.calibrated_dual(task.macs_budget, self.normalizer.beta, self._loss_and_macs,
                                                     task.budget_keep_ratio)
        else:  # beta and lambda per budget bin, each calibrated at its bin's budget
            self.normalizer, self.dual = shared_binned_state(normalizer, dual, task, lambda: task.binned_reward_state(
                lambda c: task.calibrated_normalizer(task.keep_ratio_of(c), self.static_ratios),
                lambda c: float(task.costs_of(np.array([c]), params=False)[0][0]), task.keep_ratio_of,
                self._loss_and_macs))
        self._budget_source: tuple[Any, np.random.Generator] | None = None
        self.episodes = RuntimeEpisodes(task, self.static_ratios, self.normalizer, self.dual)
        self.num_layers = task.num_layers
        self.layer_in_channels = list(task.in_channels)
        self.observation_space = spaces.Box(-np.inf, np.inf, (task.runtime_obs_dim,), np.float32)
        self.action_space = spaces.Box(np.float32(task.cfg.alpha), np.float32(1.0), (1,), np.float32)

    def _loss_and_macs(self, keep_ratio: float) -> tuple[float, float]:
        """Mean calibration loss and MAC ratio of the uniform runtime keep ratio (under the static policy)."""
        task = self.task
        with torch.no_grad():
            state = task.rollout(task.calibration_images, keep_ratio, self.static_ratios)
            loss = float(task.losses(state.logits, task.calibration_labels).mean())
        return loss, float(task.costs.macs_ratio(state.kept).mean())

    @property
    def budget_keep_ratio(self) -> float:
        """The keep ratio that, in every layer, spends exactly the MAC budget (an agent's natural first action)."""
        return self.task.budget_keep_ratio

    def set_static_policy(self, static_policy: Any) -> np.ndarray:
        """Replace the fixed static policy (e.g. after a round of static-agent training); returns its ratios."""
        self.static_ratios = self.task.static_ratios_of(static_policy)
        self.episodes.set_static_ratios(self.static_ratios)
        return self.static_ratios

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        index = self._pick_index(options)
        budget = self._pick_budget(options)
        if budget is None:
            obs = self.episodes.start(np.array([index]))
            return obs[0], {"index": index}
        obs = self.episodes.start(np.array([index]), np.array([budget]))
        return obs[0], {"index": index, "budget_value": budget}

    def _pick_budget(self, options: dict | None) -> float | None:
        """The episode's budget value: ``options["budget"]`` (checked against the range) or a draw from
        the budget stream of the environment's seed; None for a one-budget environment."""
        return pick_budget(self, options)

    def _pick_index(self, options: dict | None) -> int:
        size = len(self.task.source)
        if options and "index" in options:
            index = int(options["index"])
            if not 0 <= index < size:
                raise ValueError(f"options['index'] must be in [0, {size - 1}], got {index}")
            return index
        return int(self.np_random.integers(size))

    def step(self, action):
        if self.episodes.state is None or self.episodes.state.done:
            raise RuntimeError("call reset() before step() (the episode is over or not started)")
        obs, rewards, terminated, infos = self.episodes.advance(self.task.single_action(action))
        return obs[0], float(rewards[0]), terminated, False, infos[0] if terminated else {}
