"""What a ``model=`` keyword accepts, and how a converted network is rebuilt from its ``config``.

A model is one of:

* the name of a hand-written backbone (:data:`~prune_env.nets.backbones.BACKBONES`);
* an import path ``"module:function"`` (e.g. ``"torchvision.models:vgg11_bn"``) or a callable,
  returning an ``nn.Module``; it is called with ``num_classes=`` when it takes that keyword;
* an ``nn.Module`` (copied) or a :class:`~prune_env.nets.gated.GatedNet` (copied as it is).

Anything but a backbone name is converted by :func:`~prune_env.nets.convert.gate`. The network's
``config`` then records ``{"name": "gated", "builder": "module:function", "kwargs": {...},
"input_shape": [C, H, W]}``. Rebuilding it (:func:`rebuild_gated`, used by checkpoints and deployed
files) imports nothing a file names: the builder must be one the caller passes in ``models``.
"""

from __future__ import annotations

import copy
import importlib
import inspect
from typing import Any, Callable, Iterable

import torch
from torch import nn

from prune_env.nets.backbones import BACKBONES, build_net, rebuild_net
from prune_env.nets.convert import gate
from prune_env.nets.gated import GatedNet

#: ``config["name"]`` of networks built by the converter
GATED = "gated"


def builder_path(fn: Callable) -> str:
    """``"module:qualname"`` of a function or class."""
    return f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', type(fn).__name__)}"


def import_builder(path: str) -> Callable:
    """The callable named by ``"module:function"`` (``function`` may be dotted: ``Class.method``).

    Raises:
        ValueError: not of the form ``module:function``, or nothing callable of that name.
    """
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"model={path!r}: expected a backbone name {sorted(BACKBONES)} or an import path "
                         "'module:function' (e.g. 'torchvision.models:resnet34')")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"model={path!r}: cannot import module {module_name!r}: {exc}") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"model={path!r}: module {module_name!r} has no {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"model={path!r}: {attr!r} is not callable")
    return obj


def is_backbone(model: Any) -> bool:
    """Whether ``model`` names a hand-written backbone (None: the default one)."""
    return model is None or (isinstance(model, str) and model in BACKBONES)


def model_label(model: Any) -> str:
    """A short text naming ``model`` (for messages, run records and checkpoints)."""
    if model is None or isinstance(model, str):
        return str(model or "digitnet")
    if isinstance(model, nn.Module):
        return type(model).__name__
    return builder_path(model)


def _call_builder(fn: Callable, kwargs: dict) -> nn.Module:
    try:
        params = inspect.signature(fn).parameters
        takes = "num_classes" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
    except (TypeError, ValueError):
        takes = True
    module = fn(**kwargs) if takes else fn()
    if not isinstance(module, nn.Module):
        raise ValueError(f"model={builder_path(fn)!r} returned {type(module).__name__}, not a torch.nn.Module")
    return module


def build_model(model: Any, *, num_classes: int, input_shape: tuple[int, int, int], width: float | None = None) -> GatedNet:
    """The gated network for ``model`` (see the module docstring) on images of ``input_shape``.

    Raises:
        ValueError: an unknown name or import path, ``width`` with anything but a backbone name.
        ConversionError: the model cannot be converted (the message names the module and why).
    """
    if is_backbone(model):
        kwargs: dict[str, Any] = {"num_classes": num_classes, "in_channels": input_shape[0]}
        if width is not None:
            kwargs["width"] = width
        return build_net(model or "digitnet", **kwargs)
    if width is not None:
        raise ValueError(f"width applies to the built-in backbones {sorted(BACKBONES)} only, not to model={model_label(model)!r}")
    if isinstance(model, GatedNet):
        return copy.deepcopy(model)
    builder, kwargs = None, {}
    if isinstance(model, nn.Module):
        module = model
    else:
        fn = import_builder(model) if isinstance(model, str) else model
        if not callable(fn):
            raise ValueError(f"model must be a backbone name, 'module:function', a callable or an nn.Module, got {model!r}")
        builder = model if isinstance(model, str) else builder_path(fn)
        kwargs = {"num_classes": int(num_classes)}
        module = _call_builder(fn, kwargs)
    config = {"name": GATED, "builder": builder, "kwargs": kwargs, "input_shape": [int(v) for v in input_shape]}
    return gate(module, torch.zeros(2, *input_shape), config=config)


def rebuild_gated(config: dict, models: Iterable[Any] = ()) -> GatedNet:
    """Rebuild a converted network from its ``config`` with a builder the caller allows.

    ``models`` are what the caller names (import paths, callables, modules): the config's builder
    must be one of them; a module rebuilds a config with no builder. Nothing the config names is
    imported otherwise.

    Raises:
        ValueError: the config's builder is not among ``models``, or the config is malformed.
    """
    builder, shape = config.get("builder"), config.get("input_shape")
    kwargs = config.get("kwargs") or {}
    if not (isinstance(shape, list) and len(shape) == 3 and all(isinstance(v, int) and v > 0 for v in shape)):
        raise ValueError(f"config input_shape must be three positive integers, got {shape!r}")
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise ValueError(f"config kwargs must be a dict of keywords, got {kwargs!r:.80}")
    for model in models:
        if isinstance(model, GatedNet):
            continue
        if isinstance(model, nn.Module) and builder is None:
            return gate(model, torch.zeros(2, *shape), config=dict(config))
        if isinstance(model, str) and model == builder:
            fn = import_builder(model)
        elif callable(model) and not isinstance(model, (str, nn.Module)) and builder_path(model) == builder:
            fn = model
        else:
            continue
        return gate(_call_builder(fn, dict(kwargs)), torch.zeros(2, *shape), config=dict(config))
    what = f"builder {builder!r}" if builder else "a model passed as an nn.Module"
    hint = f"pass model={builder!r} (or that function)" if builder else "pass the same nn.Module as model="
    raise ValueError(f"the network was built by {what}, which the caller did not allow: {hint} to rebuild it; "
                     "nothing a file names is imported unasked")


def rebuild(config: dict, models: Iterable[Any] = ()) -> GatedNet:
    """Rebuild any network from its ``config``: a backbone by name, a converted one with a builder among ``models``."""
    if config.get("name") == GATED:
        return rebuild_gated(config, models)
    return rebuild_net(config)
