"""Whether a benchmark record's figures hold: ``python -m agents.benchmark validate RESULT.json ...``.

A run record (``<out>/<suite>/runs/<method>/seed<k>.json``, written by ``python -m agents.benchmark run``)
is checked in three ways (:func:`validate_result`):

1. **The network.** A record made on a ``--checkpoint`` stores that file's sha256; a missing file, or
   another file at that path (a retrained network: training is not bit-reproducible across CPUs), is
   named as such (:func:`checkpoint_mismatch`) and nothing else is checked.
2. **The recorded test episode.** One deterministic episode of the method on one test image
   (``episode_record``) is replayed with ``gym.make`` (:func:`prune_env.benchmark.replay.validate`):
   the same actions must give the same observations, reward and info within float32 noise. Rows no
   environment keyword reproduces (the label-using oracle, the re-ranked L1 / BN baselines) store no
   episode and say why (``episode_record_note``).
3. **The headline figures.** Records written since per-input actions were added hold ``per_input``
   (:func:`prune_env.benchmark.scoring.per_input_record`): the runtime keep ratios every test input was
   run at, ``(N, L)``, stored losslessly, with the static keep ratios, the scoring task's configuration
   and the seed of the shuffled control. :func:`check_headline` runs the network again at exactly
   those keep ratios (:func:`prune_env.benchmark.scoring.rescore`), re-derives ``beta0`` from the suite's
   environment keywords, and compares every headline figure the record states (:data:`HEADLINE`: test
   top-1, mean MAC ratio, test loss, the fixed-β objective, the stored-parameter ratio, the fraction of
   inputs within budget, ``beta0``, uniform at the same MACs, the shuffled control and the adaptation
   gain, the oracle's loss-knapsack MACs) within float32 noise (``|recorded - re-derived| <= rtol x
   max(1, |re-derived|)``; one test image of top-1 is far outside it). A figure that differs is named
   with both values.

A record is valid when every check it supports passes: its episode replays (or it stores none, with
its reason, and its headline re-derives) and its headline re-derives. Records written before
per-input actions (every record published under ``benchmark_results/`` so far) cannot have their
headline re-derived without retraining (the trained agents are not stored): ``validate`` replays their
episode as before and says ``record predates per-input actions: headline not re-derived``. What the
re-derivation proves: the published figures are what the stored actions give on the stored network;
not that the agent chose those actions (the stored episode replay ties one image to the agent's
observations).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from prune_env.io import file_sha256

#: the headline figures a record may state, as ``(name, keys into the record)``; each is compared with the
#: figure re-derived from the record's per-input actions where the record states it
HEADLINE = (
    ("test top-1", ("test", "accuracy")),
    ("mean MAC ratio", ("test", "macs_ratio")),
    ("test loss", ("test", "loss")),
    ("fixed-β objective", ("objective",)),
    ("stored-parameter ratio", ("test", "params_ratio")),
    ("inputs within budget", ("test", "within_budget")),
    ("β0", ("beta0",)),
    ("oracle loss-knapsack MAC ratio", ("test", "loss_oracle_macs_ratio")),
    ("uniform @ same MACs: keep ratio", ("iso_mac", "keep_ratio")),
    ("uniform @ same MACs: top-1", ("iso_mac", "accuracy")),
    ("uniform @ same MACs: objective", ("iso_mac", "objective")),
    ("uniform @ same MACs: MAC ratio", ("iso_mac", "macs_ratio")),
    ("shuffled top-1", ("adaptation", "shuffled_accuracy")),
    ("shuffled objective", ("adaptation", "shuffled_objective")),
    ("shuffled MAC ratio", ("adaptation", "shuffled_macs_ratio")),
    ("adaptation gain (top-1)", ("adaptation", "gain_accuracy")),
    ("adaptation gain (objective)", ("adaptation", "gain_objective")),
)
#: what validate says of a record without per-input actions
PREDATES = "record predates per-input actions: headline not re-derived"


def checkpoint_mismatch(checkpoint: str | None, sha256: str | None) -> str | None:
    """Why a record's network is not the one at ``checkpoint`` here (None where it is, or nothing was recorded)."""
    if not checkpoint or not sha256:
        return None
    path = Path(checkpoint)
    if not path.is_file():
        return f"the record ran on checkpoint {checkpoint} (sha256 {sha256[:12]}...), which is not here"
    actual = file_sha256(path)
    if actual != sha256:
        return (f"checkpoint {checkpoint} is not the file the record ran on (sha256 {actual[:12]}... here, "
                f"{sha256[:12]}... recorded): a replay needs that exact network (a retrained one differs)")
    return None


def _figure(data: Any, keys: tuple[str, ...]) -> float | None:
    for key in keys:
        if not isinstance(data, dict) or data.get(key) is None:
            return None
        data = data[key]
    return float(data) if isinstance(data, (int, float)) else None


def rederive_headline(data: dict) -> dict:
    """The headline figures of a record re-derived from its ``per_input`` actions, in the record's layout
    (``test``, ``objective``, ``beta0``, ``iso_mac``, ``adaptation``)."""
    from prune_env.benchmark.leaderboard import reference_beta
    from prune_env.benchmark.scoring import rescore, suite_test_task

    beta0 = reference_beta(suite_test_task(data["suite_env_kwargs"]))
    scores = rescore(data["per_input"], beta0)
    return {"test": scores["test"], "objective": scores["test"]["objective"], "beta0": beta0,
            "iso_mac": scores["iso_mac"], "adaptation": scores["adaptation"]}


def check_headline(data: dict, rtol: float = 1e-5) -> tuple[bool, str]:
    """Compare the headline figures a record states (:data:`HEADLINE`) with those its per-input actions give;
    ``(ok, message)`` naming each figure that differs (recorded and re-derived values)."""
    if not data.get("per_input"):
        return True, PREDATES
    from prune_env.benchmark.scoring import decode_array

    n = decode_array(data["per_input"]["actions"]).shape[0]
    found = rederive_headline(data)
    checked, differ = [], []
    for name, keys in HEADLINE:
        recorded = _figure(data, keys)
        if recorded is None or (isinstance(recorded, float) and math.isnan(recorded)):
            continue
        again = _figure(found, keys)
        if again is None:
            differ.append(f"{name} recorded {recorded:.6g}, not re-derived")
        elif not abs(recorded - again) <= rtol * max(1.0, abs(again)):
            differ.append(f"{name} recorded {recorded:.6g}, re-derived {again:.6g}")
        checked.append(name)
    if differ:
        return False, f"headline differs from what the stored actions of {n} test inputs give: " + "; ".join(differ)
    test = found["test"]
    return True, (f"headline re-derived from the stored actions of {n} test inputs: {len(checked)} figures agree "
                  f"(test top-1 {test['accuracy']:.4f}, mean MAC ratio {test['macs_ratio']:.4f}, "
                  f"objective {found['objective']:.4f})")


def read_record(path: str | os.PathLike) -> dict:
    """A result JSON read as untrusted input: a :class:`~prune_env.errors.UsageError` naming the file and
    the field for one that is not JSON, or whose recorded episode names an environment other than this
    package's, keywords that are not a dict, or a ``model`` / ``dataset`` that is not a registered name."""
    from prune_env.errors import UsageError
    from prune_env.ids import ENV_IDS

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"result {str(path)!r}: no such file")
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise UsageError(f"result {str(path)!r}: not a JSON result record ({type(exc).__name__}: {exc})"[:300]) from None
    if not isinstance(data, dict):
        raise UsageError(f"result {str(path)!r}: expected a JSON object, got {type(data).__name__}")
    record = data.get("episode_record")
    if record is not None:
        if not isinstance(record, dict):
            raise UsageError(f"result {str(path)!r}, key 'episode_record': expected an object, got {type(record).__name__}")
        if record.get("env_id") not in ENV_IDS:
            raise UsageError(f"result {str(path)!r}, key 'episode_record.env_id': expected one of {list(ENV_IDS)}, "
                             f"got {record.get('env_id')!r:.60}")
        kwargs = record.get("env_kwargs", {})
        if not isinstance(kwargs, dict):
            raise UsageError(f"result {str(path)!r}, key 'episode_record.env_kwargs': expected an object")
        for key in ("model", "dataset"):
            if kwargs.get(key) is not None and (not isinstance(kwargs[key], str) or ":" in kwargs[key]):
                raise UsageError(f"result {str(path)!r}, key 'episode_record.env_kwargs.{key}': a registered name only, "
                                 f"got {kwargs[key]!r:.60}")
    return data


def validate_result(path: str | os.PathLike, rtol: float = 1e-5) -> tuple[bool, str]:
    """Check a result JSON (the network, the recorded episode, the headline; see the module's docstring);
    ``(ok, message)``."""
    from prune_env.benchmark.replay import EpisodeRecord, validate

    data = read_record(path)
    label = f"{data.get('suite')}/{data.get('algo')}/seed{data.get('seed')}"
    record = data.get("episode_record")
    checkpoint = (record or {}).get("env_kwargs", {}).get("checkpoint") or (data.get("suite_env_kwargs") or {}).get("checkpoint")
    mismatch = checkpoint_mismatch(checkpoint, data.get("checkpoint_sha256"))
    if mismatch:
        return False, f"{label}: {mismatch}"
    ok, parts = True, []
    if record:
        result = validate(EpisodeRecord(**record), rtol=rtol)
        if result.ok:
            parts.append(f"the recorded test episode replays exactly (reward {result.replayed_reward:.6f})")
        else:
            ok = False
            parts.append(f"replay differs: {result.mismatches}")
    else:
        ok = bool(data.get("per_input"))  # nothing to check without either
        parts.append(f"no episode record ({data.get('episode_record_note') or 'none stored'})")
    headline_ok, message = check_headline(data, rtol)
    return ok and headline_ok, f"{label}: " + "; ".join([*parts, message])


__all__ = ["HEADLINE", "PREDATES", "check_headline", "checkpoint_mismatch", "read_record", "rederive_headline",
           "validate_result"]
