#!/usr/bin/env python
"""Single-file PPO for the pruning environments, in the style of CleanRL's ``ppo_continuous_action.py``.

No stable-baselines3: a Gaussian MLP actor-critic, GAE, the clipped surrogate, everything in this
file, on Gymnasium's own vector API::

    python benchmarks/cleanrl_ppo.py                                   # RuntimePrune-v0, 100k steps
    python benchmarks/cleanrl_ppo.py --total-timesteps 20000 --num-envs 16 --seed 2
    python benchmarks/cleanrl_ppo.py --env-id StaticPrune-v0 --env-kwargs '{"eval_batch": 32}'

The environments come from ``gym.make_vec(env_id, num_envs, vectorization_mode="vector_entry_point")``:
one Gymnasium ``VectorEnv`` that runs the ``num_envs`` episodes as one batch
(``prune_env/envs/gym_vector.py``; ``--vectorization-mode sync`` gives Gymnasium's ``SyncVectorEnv``
over single environments instead), with same-step autoreset (the observation after a final step
is the next episode's first; the episodes terminate after ``L`` layers and are never truncated,
so nothing is bootstrapped from a final observation). Actions are sampled on the real line and clipped to ``[alpha, 1]`` for the
environment (the environment clips as well); the log-probabilities are of the unclipped sample,
as in CleanRL. ``gamma`` defaults to 1: an episode is one image and its sparse reward. The loss
carries the paper's action regulariser (Eq. 13), ``0.5 * ||a - clip(a, alpha, 1)||^2`` on the policy
mean, as an explicit term of its sum; ``agents/policies.py`` adds the same gradient to SB3's
algorithms through an optimizer hook (tests/test_action_regularizer.py checks that they agree).

Prints the mean episodic return every iteration and, at the end, the mean over the last
``--report-last`` episodes; :func:`main` returns those figures for scripts and tests. As CleanRL's
scripts do, it writes TensorBoard logs to ``runs/<env>__cleanrl_ppo__<seed>__<time>`` (the
hyper-parameters as text, ``charts/episodic_return``, ``losses/*``; ``--tb-dir ''`` writes none).

Options keep CleanRL's names (``--total-timesteps``, ``--num-envs``); ``--timesteps`` and
``--n-envs``, the names of ``train_agents.py``, are accepted as aliases, and ``--threads`` has the
meaning it has everywhere. ``--help`` shows each option's documentation (the dataclass's field
docstrings); booleans take true/false, yes/no, 1/0 and nothing else.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import dataclass, field, fields
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.optim as optim
from torch.distributions.normal import Normal

import prune_env  # noqa: F401  (registers RuntimePrune-v0 and StaticPrune-v0)


@dataclass
class Args:
    """Command-line arguments (``--total-timesteps`` for ``total_timesteps`` and so on)."""

    env_id: str = "RuntimePrune-v0"
    """the environment id"""
    env_kwargs: str = "{}"
    """environment keywords as a JSON object, e.g. '{"budget": 0.7}'"""
    seed: int = 1
    """seed of the experiment (Python, NumPy, torch, environments)"""
    torch_deterministic: bool = True
    """torch.backends.cudnn.deterministic"""
    threads: int = 1
    """torch CPU threads (default 1: the per-step work is tiny, more threads only contend; 0 keeps torch's own choice)"""
    total_timesteps: int = 100_000
    """environment steps (layer decisions) of the experiment"""
    learning_rate: float = 1e-3
    """Adam learning rate"""
    num_envs: int = 8
    """parallel environments"""
    vectorization_mode: str = "vector_entry_point"
    """gym.make_vec's vectorization_mode: vector_entry_point (batched), sync or async"""
    num_steps: int = 64
    """steps per environment per rollout"""
    anneal_lr: bool = True
    """anneal the learning rate linearly to 0"""
    gamma: float = 1.0
    """discount factor"""
    gae_lambda: float = 0.95
    """lambda of generalised advantage estimation"""
    num_minibatches: int = 4
    """minibatches per epoch"""
    update_epochs: int = 5
    """epochs per rollout"""
    norm_adv: bool = True
    """normalise advantages per minibatch"""
    clip_coef: float = 0.2
    """surrogate clipping coefficient"""
    clip_vloss: bool = True
    """clip the value loss as in PPO's reference implementation"""
    ent_coef: float = 0.0
    """entropy coefficient"""
    vf_coef: float = 0.5
    """value-loss coefficient"""
    max_grad_norm: float = 0.5
    """gradient clipping norm"""
    action_reg_coef: float = 1.0
    """coefficient of the action regulariser of Eq. 13 (0 drops it), as the registry's PPO"""
    target_kl: float | None = None
    """stop an update early above this approximate KL (None: never)"""
    log_std_init: float = -1.5
    """initial log standard deviation of the Gaussian policy"""
    initial_action: float | None = None
    """initial policy mean (default: the environment's keep-ratio budget)"""
    report_last: int = 100
    """episodes the final mean episodic return averages over"""
    save_model: str | None = None
    """save the agent's state dict here at the end"""
    tb_dir: str = "runs"
    """directory of the TensorBoard runs, CleanRL's runs/<run name> ('' writes none)"""

    # filled in at run time
    batch_size: int = field(default=0, init=False)
    minibatch_size: int = field(default=0, init=False)
    num_iterations: int = field(default=0, init=False)


def layer_init(layer: nn.Linear, std: float = np.sqrt(2), bias_const: float = 0.0) -> nn.Linear:
    torch.nn.init.orthogonal_(layer.weight, std)
    torch.nn.init.constant_(layer.bias, bias_const)
    return layer


class Agent(nn.Module):
    """Separate actor and critic MLPs (64-64, tanh); a state-independent log std."""

    def __init__(self, obs_dim: int, act_dim: int, log_std_init: float, initial_action: float):
        super().__init__()
        self.critic = nn.Sequential(layer_init(nn.Linear(obs_dim, 64)), nn.Tanh(), layer_init(nn.Linear(64, 64)), nn.Tanh(),
                                    layer_init(nn.Linear(64, 1), std=1.0))
        self.actor_mean = nn.Sequential(layer_init(nn.Linear(obs_dim, 64)), nn.Tanh(), layer_init(nn.Linear(64, 64)), nn.Tanh(),
                                        layer_init(nn.Linear(64, act_dim), std=0.01, bias_const=initial_action))
        self.actor_logstd = nn.Parameter(torch.full((1, act_dim), float(log_std_init)))

    def get_value(self, x: torch.Tensor) -> torch.Tensor:
        return self.critic(x)

    def get_action_and_value(self, x: torch.Tensor, action: torch.Tensor | None = None):
        """Action (sampled when None), its log-probability, the entropy, the value and the policy mean."""
        mean = self.actor_mean(x)
        std = torch.exp(self.actor_logstd.expand_as(mean))
        dist = Normal(mean, std)
        if action is None:
            action = dist.sample()
        return action, dist.log_prob(action).sum(1), dist.entropy().sum(1), self.critic(x), mean


def action_regularizer(mean: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Eq. 13: ``0.5 * ||a - clip(a, low, high)||^2`` of the policy mean per sample, averaged over the batch.

    Zero inside ``[low, high] = [alpha, 1]``; pulls a mean that drifted outside back to the keep
    ratios the environment applies (it clips the actions).
    """
    outside = mean - mean.clamp(low, high)
    return 0.5 * outside.pow(2).sum(dim=-1).mean()


def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of a dataclass (what tyro shows in CleanRL's ``--help``)."""
    import ast
    import inspect
    import textwrap

    body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body
    docs = {}
    for node, after in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(after, ast.Expr) \
                and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def boolean(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false (yes/no, 1/0), got {text!r}")


#: train_agents.py's names for CleanRL's options
ALIASES = {"total_timesteps": "--timesteps", "num_envs": "--n-envs"}


def parse_args(argv: list[str] | None = None) -> Args:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="Options keep CleanRL's names; "
                                     "--timesteps and --n-envs are aliases of --total-timesteps and --num-envs.")
    docs = field_docs(Args)
    for f in fields(Args):
        if not f.init:
            continue
        flags = ["--" + f.name.replace("_", "-"), *([ALIASES[f.name]] if f.name in ALIASES else [])]
        help_text = f"{docs.get(f.name, '')} (default: %(default)s)".strip()
        if f.type in ("bool", bool):
            parser.add_argument(*flags, dest=f.name, type=boolean, default=f.default, metavar="BOOL", help=help_text)
        elif f.name in ("target_kl", "initial_action"):
            parser.add_argument(*flags, dest=f.name, type=float, default=f.default, help=help_text)
        elif f.name == "save_model":
            parser.add_argument(*flags, dest=f.name, type=str, default=f.default, help=help_text)
        else:
            parser.add_argument(*flags, dest=f.name, type=type(f.default), default=f.default, help=help_text)
    return Args(**vars(parser.parse_args(argv)))


def env_kwargs_of(args: Args) -> dict[str, Any]:
    """``--env-kwargs``: a JSON object, or KEY=VALUE (KEY:VALUE) pairs as the other scripts take them."""
    text = args.env_kwargs.strip()
    if text.startswith("{"):
        return json.loads(text)
    from prune_env.cli import parse_key_values

    return parse_key_values(text.split(), "--env-kwargs")


def make_envs(args: Args) -> gym.vector.VectorEnv:
    env_kwargs = env_kwargs_of(args)
    same_step = {"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}
    if args.vectorization_mode == "vector_entry_point":  # the batched VectorEnv takes its options as keywords
        return gym.make_vec(args.env_id, num_envs=args.num_envs, vectorization_mode="vector_entry_point", **same_step,
                            **env_kwargs)
    return gym.make_vec(args.env_id, num_envs=args.num_envs, vectorization_mode=args.vectorization_mode,
                        vector_kwargs=same_step, **env_kwargs)


def main(argv: list[str] | None = None) -> dict:
    """Train; returns ``mean_episodic_return`` (last ``report_last`` episodes), the per-episode
    returns, the first iteration's mean return, the size of the policy's change and the steps."""
    args = parse_args(argv)
    args.batch_size = args.num_envs * args.num_steps
    args.minibatch_size = max(1, args.batch_size // args.num_minibatches)
    args.num_iterations = max(1, args.total_timesteps // args.batch_size)

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    writer = None
    if args.tb_dir:  # CleanRL's TensorBoard layout
        from torch.utils.tensorboard import SummaryWriter

        run_name = f"{args.env_id}__cleanrl_ppo__{args.seed}__{int(time.time())}"
        writer = SummaryWriter(f"{args.tb_dir}/{run_name}")
        writer.add_text("hyperparameters", "|param|value|\n|-|-|\n" + "\n".join(
            f"|{k}|{v}|" for k, v in vars(args).items()))

    envs = make_envs(args)
    assert isinstance(envs.single_action_space, gym.spaces.Box), "only continuous action spaces are supported"
    low = float(envs.single_action_space.low.reshape(-1)[0])
    high = float(envs.single_action_space.high.reshape(-1)[0])
    obs_dim = int(np.prod(envs.single_observation_space.shape))
    act_dim = int(np.prod(envs.single_action_space.shape))
    if args.initial_action is None:
        args.initial_action = float(env_kwargs_of(args).get("budget", 0.5))
    agent = Agent(obs_dim, act_dim, args.log_std_init, args.initial_action).to(device)
    initial_params = torch.cat([p.detach().clone().reshape(-1) for p in agent.parameters()])
    optimizer = optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5)

    obs = torch.zeros((args.num_steps, args.num_envs, obs_dim), device=device)
    actions = torch.zeros((args.num_steps, args.num_envs, act_dim), device=device)
    logprobs = torch.zeros((args.num_steps, args.num_envs), device=device)
    rewards = torch.zeros((args.num_steps, args.num_envs), device=device)
    dones = torch.zeros((args.num_steps, args.num_envs), device=device)
    values = torch.zeros((args.num_steps, args.num_envs), device=device)

    global_step, start = 0, time.time()
    next_obs, _ = envs.reset(seed=args.seed)
    next_obs = torch.as_tensor(next_obs, dtype=torch.float32, device=device)
    next_done = torch.zeros(args.num_envs, device=device)
    running = np.zeros(args.num_envs)
    episodic_returns: list[float] = []
    iteration_means: list[float] = []

    for iteration in range(1, args.num_iterations + 1):
        if args.anneal_lr:
            optimizer.param_groups[0]["lr"] = (1.0 - (iteration - 1.0) / args.num_iterations) * args.learning_rate
        finished_before = len(episodic_returns)
        for step in range(args.num_steps):
            global_step += args.num_envs
            obs[step], dones[step] = next_obs, next_done
            with torch.no_grad():
                action, logprob, _, value, _ = agent.get_action_and_value(next_obs)
            values[step], actions[step], logprobs[step] = value.flatten(), action, logprob
            env_action = np.clip(action.cpu().numpy(), low, high).astype(np.float32)
            next_obs_np, reward, terminations, truncations, _ = envs.step(env_action)
            done = np.logical_or(terminations, truncations)
            running += reward
            for i in np.flatnonzero(done):
                episodic_returns.append(float(running[i]))
                running[i] = 0.0
            rewards[step] = torch.as_tensor(reward, dtype=torch.float32, device=device)
            next_obs = torch.as_tensor(next_obs_np, dtype=torch.float32, device=device)
            next_done = torch.as_tensor(done, dtype=torch.float32, device=device)

        # generalised advantage estimation (episodes terminate; a done step does not bootstrap)
        with torch.no_grad():
            next_value = agent.get_value(next_obs).reshape(1, -1)
            advantages = torch.zeros_like(rewards)
            lastgaelam = torch.zeros(args.num_envs, device=device)
            for t in reversed(range(args.num_steps)):
                if t == args.num_steps - 1:
                    nextnonterminal, nextvalues = 1.0 - next_done, next_value
                else:
                    nextnonterminal, nextvalues = 1.0 - dones[t + 1], values[t + 1]
                delta = rewards[t] + args.gamma * nextvalues * nextnonterminal - values[t]
                advantages[t] = lastgaelam = delta + args.gamma * args.gae_lambda * nextnonterminal * lastgaelam
            returns = advantages + values

        b_obs = obs.reshape((-1, obs_dim))
        b_logprobs = logprobs.reshape(-1)
        b_actions = actions.reshape((-1, act_dim))
        b_advantages = advantages.reshape(-1)
        b_returns = returns.reshape(-1)
        b_values = values.reshape(-1)

        b_inds = np.arange(args.batch_size)
        clipfracs = []
        for _epoch in range(args.update_epochs):
            np.random.shuffle(b_inds)
            for begin in range(0, args.batch_size, args.minibatch_size):
                mb = b_inds[begin : begin + args.minibatch_size]
                _, newlogprob, entropy, newvalue, newmean = agent.get_action_and_value(b_obs[mb], b_actions[mb])
                logratio = newlogprob - b_logprobs[mb]
                ratio = logratio.exp()
                with torch.no_grad():
                    approx_kl = ((ratio - 1) - logratio).mean()
                    clipfracs.append(((ratio - 1.0).abs() > args.clip_coef).float().mean().item())
                mb_adv = b_advantages[mb]
                if args.norm_adv and len(mb) > 1:
                    mb_adv = (mb_adv - mb_adv.mean()) / (mb_adv.std() + 1e-8)
                pg_loss = torch.max(-mb_adv * ratio, -mb_adv * torch.clamp(ratio, 1 - args.clip_coef, 1 + args.clip_coef)).mean()
                newvalue = newvalue.view(-1)
                if args.clip_vloss:
                    v_unclipped = (newvalue - b_returns[mb]) ** 2
                    v_clipped = b_values[mb] + torch.clamp(newvalue - b_values[mb], -args.clip_coef, args.clip_coef)
                    v_loss = 0.5 * torch.max(v_unclipped, (v_clipped - b_returns[mb]) ** 2).mean()
                else:
                    v_loss = 0.5 * ((newvalue - b_returns[mb]) ** 2).mean()
                a_loss = action_regularizer(newmean, low, high)  # Eq. 13
                loss = pg_loss - args.ent_coef * entropy.mean() + v_loss * args.vf_coef + args.action_reg_coef * a_loss
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)
                optimizer.step()
            if args.target_kl is not None and approx_kl > args.target_kl:
                break

        recent = episodic_returns[finished_before:]
        mean_recent = float(np.mean(recent)) if recent else float("nan")
        iteration_means.append(mean_recent)
        if writer is not None:
            if recent:
                writer.add_scalar("charts/episodic_return", mean_recent, global_step)
            writer.add_scalar("losses/value_loss", float(v_loss), global_step)
            writer.add_scalar("losses/policy_loss", float(pg_loss), global_step)
            writer.add_scalar("losses/action_regularizer", float(a_loss), global_step)
            writer.add_scalar("losses/approx_kl", float(approx_kl), global_step)
            writer.add_scalar("losses/clipfrac", float(np.mean(clipfracs)), global_step)
            writer.add_scalar("charts/SPS", int(global_step / (time.time() - start)), global_step)
        print(f"iteration={iteration}/{args.num_iterations} global_step={global_step} "
              f"mean_episodic_return={mean_recent:.4f} episodes={len(recent)} "
              f"clipfrac={np.mean(clipfracs):.3f} SPS={int(global_step / (time.time() - start))}", flush=True)

    envs.close()
    if writer is not None:
        writer.close()
    final_params = torch.cat([p.detach().reshape(-1) for p in agent.parameters()])
    last = episodic_returns[-args.report_last:]
    result = {
        "mean_episodic_return": float(np.mean(last)) if last else float("nan"),
        "first_iteration_return": iteration_means[0] if iteration_means else float("nan"),
        "iteration_returns": iteration_means,
        "episodic_returns": episodic_returns,
        "policy_change": float((final_params - initial_params).norm()),
        "global_step": global_step,
        "seconds": time.time() - start,
    }
    print(f"mean_episodic_return (last {len(last)} episodes) = {result['mean_episodic_return']:.4f}; "
          f"{global_step} steps in {result['seconds']:.1f}s; policy parameter change {result['policy_change']:.4f}")
    if args.save_model:
        torch.save(agent.state_dict(), args.save_model)
        print(f"model saved to {args.save_model}")
    return result


if __name__ == "__main__":
    main()
