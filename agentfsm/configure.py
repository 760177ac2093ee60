"""Checking an agent's keyword arguments and building the parts they describe (clients,
fallback slots, request parameters)."""

from __future__ import annotations

import difflib
import inspect
import os
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import openai

from agentfsm.budget import pricing_function
from agentfsm.errors import ConfigurationError
from agentfsm.providers.openai import RESERVED_PARAMS, OpenAIChatModel
from agentfsm.usage import Usage
from agentfsm.wiring import ModelSlot

__all__ = [
    "build_params",
    "check_arguments",
    "check_base_url",
    "fallback_slots",
    "make_client",
    "require",
]


_ALIASES = {  # keywords of other libraries, and what agentfsm calls them
    "tools": "tool_registry",
    "functions": "tool_registry",
    "instructions": "system_prompt",
    "system": "system_prompt",
    "name": "agent_name",
    "max_tokens": "max_completion_tokens",
    "timeout": "request_timeout",
    "max_retries": "retry_strategy",
    "budget": "budget_control",
    "stop_signal": "manual_stop_signal_function",
    "model_name": "model",
}


def check_arguments(cls: type, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """Refuse arguments the agent's ``__init__`` chain does not take, saying what to pass
    instead (a plain ``TypeError`` from Python names neither the fix nor the valid keywords).

    Raises:
        ConfigurationError: an unknown keyword (with the closest valid one), or more than the
            model given positionally.
    """
    valid: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass is object:
            continue
        for param in inspect.signature(init).parameters.values():
            if param.kind in (param.KEYWORD_ONLY, param.POSITIONAL_OR_KEYWORD):
                valid.add(param.name)
    valid.discard("self")
    if len(args) > 1:
        raise ConfigurationError(
            f"{cls.__name__} takes the model as its only positional argument; pass the rest "
            f"as keywords, e.g. {cls.__name__}(model='gpt-4o-mini', tool_registry=[...])"
        )
    if args and "model" in kwargs:
        raise ConfigurationError("the model was given twice: positionally and as model=")
    for name in kwargs:
        if name in valid:
            continue
        close = _ALIASES.get(name)
        if close is None:
            matches = difflib.get_close_matches(name, sorted(valid), n=1)
            close = matches[0] if matches else None
        hint = f" Did you mean {close!r}?" if close else ""
        raise ConfigurationError(
            f"{cls.__name__} got an unknown keyword argument {name!r}.{hint} Valid keywords: "
            f"{', '.join(sorted(valid))}."
        )
    if not args and "model" not in kwargs:
        raise ConfigurationError(
            f"{cls.__name__} needs a model: {cls.__name__}(model='gpt-4o-mini', ...) "
            "(or the model as the first positional argument)"
        )


def require(condition: bool, message: str) -> None:
    """Raise ``ConfigurationError(message)`` unless ``condition``."""
    if not condition:
        raise ConfigurationError(message)


def fallback_slots(
    specs: Sequence[Mapping[str, Any]] | None,
    primary: openai.AsyncOpenAI,
    params: Mapping[str, Any],
    price: Callable[[str, Usage], Decimal] | None,
) -> list[ModelSlot]:
    """The ``fallback_models`` as slots, each with its own client and (or the shared) price.

    Raises:
        ConfigurationError: a spec that is not a dict, has unknown keys, or has no model.
    """
    if specs is None:
        return []
    require(
        isinstance(specs, Sequence) and not isinstance(specs, (str, Mapping)),
        "fallback_models must be a list of dicts",
    )
    slots = []
    keys = {"model", "base_url", "api_key", "pricing", "request_params"}
    for i, spec in enumerate(specs):
        require(isinstance(spec, Mapping), f"fallback_models[{i}] must be a dict")
        unknown = sorted(set(spec) - keys)
        require(not unknown, f"fallback_models[{i}]: unknown keys {unknown}; valid: {sorted(keys)}")
        model = spec.get("model")
        require(
            isinstance(model, str) and model != "",
            f"fallback_models[{i}] needs a non-empty 'model'",
        )
        client = make_client(
            spec.get("api_key", primary.api_key if isinstance(primary.api_key, str) else None),
            spec.get("base_url", str(primary.base_url)),
        )
        extra = dict(params)
        if spec.get("request_params") is not None:
            extra.update(build_params(None, None, spec["request_params"]))
        own_price = pricing_function(spec["pricing"]) if "pricing" in spec else price
        slots.append(ModelSlot(OpenAIChatModel(client, str(model), extra), own_price, True))
    return slots


def make_client(api_key: str | None, base_url: str | None) -> openai.AsyncOpenAI:
    """An SDK client without the SDK's own retries (ours apply), for ``base_url`` or
    ``OPENAI_BASE_URL`` or OpenAI.

    Raises:
        ConfigurationError: no API key, or a base URL that is not an ``http(s)://host…`` URL.
    """
    key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
    if not key:
        raise ConfigurationError(
            "no API key: pass api_key=... or set OPENAI_API_KEY (local servers such as "
            "vLLM, llama.cpp or Ollama accept any non-empty string), or pass client=..."
        )
    require(base_url is None or isinstance(base_url, str), "base_url must be a string")
    url = base_url or os.environ.get("OPENAI_BASE_URL") or None
    if url is not None:
        check_base_url(url, "base_url" if base_url else "OPENAI_BASE_URL")
    return openai.AsyncOpenAI(api_key=key, base_url=url, max_retries=0)


def check_base_url(url: str, what: str = "base_url") -> None:
    """Refuse a server URL that cannot work, before any request waits on it.

    Raises:
        ConfigurationError: not ``http://`` or ``https://``, no host, or a bad port.
    """
    example = "e.g. 'http://localhost:8000/v1' or 'https://api.openai.com/v1'"
    try:
        parts = urlsplit(url.strip())
        port = parts.port  # raises on a port that is not a number in range
    except ValueError as error:
        raise ConfigurationError(
            f"{what} {url!r} is not a valid URL ({error}); {example}"
        ) from None
    if "://" not in url:
        raise ConfigurationError(f"{what} {url!r} must start with http:// or https://; {example}")
    if parts.scheme not in ("http", "https"):
        raise ConfigurationError(
            f"{what} {url!r} must start with http:// or https:// "
            f"(got {parts.scheme + '://' if parts.scheme else 'no scheme'}); {example}"
        )
    if not parts.hostname:
        raise ConfigurationError(f"{what} {url!r} has no host; {example}")
    del port


def build_params(
    temperature: float | None,
    max_completion_tokens: int | None,
    request_params: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The chat-completions parameters sent with every request, checked (no nulls sent).

    Raises:
        ConfigurationError: a value out of range, or a parameter the agent sends itself.
    """
    params: dict[str, Any] = {}
    if temperature is not None:
        require(
            isinstance(temperature, (int, float))
            and not isinstance(temperature, bool)
            and 0 <= temperature <= 2,
            f"temperature must be a number from 0 to 2, got {temperature!r}",
        )
        params["temperature"] = temperature
    if max_completion_tokens is not None:
        require(
            isinstance(max_completion_tokens, int)
            and not isinstance(max_completion_tokens, bool)
            and max_completion_tokens >= 1,
            f"max_completion_tokens must be a positive integer, got {max_completion_tokens!r}",
        )
        params["max_completion_tokens"] = max_completion_tokens
    if request_params is not None:
        require(isinstance(request_params, Mapping), "request_params must be a dict")
        reserved = sorted(RESERVED_PARAMS & set(request_params))
        require(
            not reserved,
            f"request_params may not set {reserved}: the agent sends those itself",
        )
        params.update({k: v for k, v in request_params.items() if v is not None})
    return params
