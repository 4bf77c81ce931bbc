#!/usr/bin/env python
"""Both agents trained together on the PettingZoo environment, as independent learners.

``prune_env.envs.multiagent.parallel_env``: one static agent and one runtime agent per image act
on each layer in the same episode. Here each *role* learns on its own reward with its own
Gaussian policy (REINFORCE with a running-mean baseline; the runtime agents share one policy,
parameter sharing), top to bottom in this file, no SB3. Needs ``pip install -e ".[multiagent]"``::

    python benchmarks/pettingzoo_independent.py                          # 300 episodes of 16 images
    python benchmarks/pettingzoo_independent.py --episodes 50 --inputs 8 --budget 0.7

Prints, every ``--report-every`` episodes, each role's mean return and the batch's accuracy,
MAC ratio and stored-parameter ratio against the budgets; :func:`main` returns them.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn as nn
from torch.distributions.normal import Normal

from prune_env.envs.multiagent import STATIC_AGENT, parallel_env  # noqa: E402


class GaussianPolicy(nn.Module):
    """A 64-64 tanh MLP mean (started at ``initial``) and a learned log std over the keep ratio."""

    def __init__(self, obs_dim: int, initial: float, log_std: float = -1.5):
        super().__init__()
        self.mean = nn.Sequential(nn.Linear(obs_dim, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 1))
        nn.init.zeros_(self.mean[-1].weight)
        nn.init.constant_(self.mean[-1].bias, initial)
        self.log_std = nn.Parameter(torch.tensor([log_std]))

    def forward(self, obs: torch.Tensor) -> Normal:
        return Normal(self.mean(obs), self.log_std.exp())


class Learner:
    """One role's policy, optimiser, baseline and the log-probabilities of the current episodes."""

    def __init__(self, obs_dim: int, initial: float, lr: float):
        self.policy = GaussianPolicy(obs_dim, initial)
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=lr)
        self.baseline: float | None = None
        self.losses: list[torch.Tensor] = []

    def act(self, observations: np.ndarray) -> tuple[np.ndarray, torch.Tensor]:
        dist = self.policy(torch.as_tensor(observations, dtype=torch.float32))
        action = dist.sample()
        return action.numpy(), dist.log_prob(action).sum(-1)

    def finish(self, log_probs: torch.Tensor, returns: np.ndarray) -> None:
        """REINFORCE on the episode: every step's return is the sparse final reward (gamma = 1)."""
        returns_t = torch.as_tensor(returns, dtype=torch.float32)
        baseline = float(returns_t.mean()) if self.baseline is None else self.baseline
        self.losses.append(-((returns_t - baseline) * log_probs.sum(0)).mean())
        self.baseline = 0.9 * baseline + 0.1 * float(returns_t.mean())

    def update(self) -> None:
        if self.losses:
            self.optimizer.zero_grad()
            torch.stack(self.losses).mean().backward()
            self.optimizer.step()
            self.losses = []


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=300)
    parser.add_argument("--inputs", type=int, default=16, help="images, hence runtime agents, per episode")
    parser.add_argument("--budget", type=float, default=0.5, help="MAC and parameter budget (sparsity)")
    parser.add_argument("--tradeoff-rate", type=float, default=0.5, help="R_r")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--episodes-per-update", type=int, default=4)
    parser.add_argument("--report-every", type=int, default=25)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)

    env = parallel_env(inputs=args.inputs, budget=args.budget, tradeoff_rate=args.tradeoff_rate)
    runtime_agents = env.runtime_agents
    static = Learner(env.observation_space(STATIC_AGENT).shape[0], env.task.static_budget_keep_ratio, args.lr)
    runtime = Learner(env.observation_space(runtime_agents[0]).shape[0], env.task.budget_keep_ratio, args.lr)
    history = []
    observations, _ = env.reset(seed=args.seed)
    for episode in range(1, args.episodes + 1):
        static_logp, runtime_logp = [], []
        while env.agents:
            a_s, lp_s = static.act(observations[STATIC_AGENT][None])
            a_r, lp_r = runtime.act(np.stack([observations[agent] for agent in runtime_agents]))
            actions = {STATIC_AGENT: a_s[0], **dict(zip(runtime_agents, a_r))}
            observations, rewards, _, _, infos = env.step(actions)
            static_logp.append(lp_s)
            runtime_logp.append(lp_r)
        static.finish(torch.stack(static_logp), np.array([rewards[STATIC_AGENT]]))
        runtime.finish(torch.stack(runtime_logp), np.array([rewards[agent] for agent in runtime_agents]))
        if episode % args.episodes_per_update == 0:
            static.update()
            runtime.update()
        s = infos[STATIC_AGENT]
        history.append({"static_return": rewards[STATIC_AGENT],
                        "runtime_return": float(np.mean([rewards[agent] for agent in runtime_agents])),
                        "accuracy": s["accuracy"], "macs_ratio": s["macs_ratio"], "params_ratio": s["params_ratio"]})
        if episode % args.report_every == 0 or episode == args.episodes:
            recent = {k: float(np.mean([h[k] for h in history[-args.report_every:]])) for k in history[-1]}
            print(f"episode={episode} static_return={recent['static_return']:.3f} runtime_return={recent['runtime_return']:.3f} "
                  f"accuracy={recent['accuracy']:.3f} macs={recent['macs_ratio']:.3f} (budget {env.task.macs_budget:.3f}) "
                  f"params={recent['params_ratio']:.3f} (budget {env.task.params_budget:.3f})", flush=True)
        observations, _ = env.reset()
    env.close()
    return {"history": history, "macs_budget": env.task.macs_budget, "params_budget": env.task.params_budget}


if __name__ == "__main__":
    main()
