"""Request bodies of the OpenAI-style endpoints: parsing, type checks and errors.

This module only reads JSON; it knows nothing about models. Checking the values against the
engine (``steps > 0``, a known sampler, ...) happens in :mod:`unmask.serve.backend`, with the
same code the CLI uses, so a request is validated exactly like the equivalent command line.

Why unknown keys are rejected: the official client sends unmask's settings through
``extra_body``, i.e. as plain top-level keys. A typo there (``step`` for ``steps``) would
otherwise be ignored silently and the client would get an answer decoded with settings it did
not ask for. OpenAI fields that we accept but cannot honour are allowed only at their neutral
value (``presence_penalty: 0``, ``logprobs: null``, ...), for the same reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

#: settings of the CLI's sampling flags that a request may not set: they name server-side files
SERVER_ONLY = ("pc_freq_file",)
#: unmask-only request fields that are not CLI sampling flags
SERVE_FIELDS = {"stream_canvas": bool, "max_new_tokens": int}
#: standard OpenAI fields, by endpoint, with their JSON type (``"any"`` = parsed separately)
COMMON_FIELDS: dict[str, Any] = {
    "model": str, "n": int, "stream": bool, "stream_options": dict, "stop": "any", "temperature": float,
    "top_p": float, "seed": int, "max_tokens": int, "user": str,
}
CHAT_FIELDS: dict[str, Any] = {"messages": "any", "max_completion_tokens": int}
COMPLETION_FIELDS: dict[str, Any] = {"prompt": "any", "echo": bool, "suffix": "any", "best_of": int}
#: OpenAI fields we cannot honour: accepted only when absent, null or equal to the neutral value
NEUTRAL: dict[str, tuple[Any, ...]] = {
    "presence_penalty": (0, 0.0),
    "frequency_penalty": (0, 0.0),
    "logit_bias": ({},),
    "logprobs": (False, 0),
    "top_logprobs": (0,),
    "echo": (False,),
    "suffix": ("",),
    "response_format": ({"type": "text"},),
    "tools": ([],),
    "tool_choice": ("none",),
    "functions": ([],),
    "function_call": ("none",),
    "store": (False,),
}
#: accepted and ignored: they do not change what is generated
IGNORED = ("user", "metadata", "service_tier", "parallel_tool_calls")
MAX_STOP_STRINGS = 16
ROLES = ("system", "user", "assistant", "developer")


class ApiError(Exception):
    """An error the server reports as an OpenAI-style JSON body (``{"error": {...}}``).

    ``param`` names the offending request field, so a client can tell which setting to fix."""

    def __init__(self, status: int, message: str, param: str | None = None, type: str = "invalid_request_error",
                 code: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.type = type
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def bad_request(message: str, param: str | None = None) -> ApiError:
    return ApiError(400, message, param=param)


@lru_cache(maxsize=1)
def sampling_field_types() -> dict[str, type]:
    """JSON type of every request field the option table gives the server (``server=True``
    rows: sampler, decoding and lockstep settings), so an option added to the table is accepted
    and type-checked here too."""
    from ..options import server_fields

    return {k: v for k, v in server_fields().items() if k not in SERVER_ONLY}


def check_type(name: str, value: Any, kind: Any) -> Any:
    """``value`` if it has JSON type ``kind`` (ints are accepted for floats, never bools)."""
    if kind == "any":
        return value
    ok = {
        bool: lambda v: isinstance(v, bool),
        int: lambda v: isinstance(v, int) and not isinstance(v, bool),
        float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        str: lambda v: isinstance(v, str),
        dict: lambda v: isinstance(v, dict),
    }[kind](value)
    if not ok:
        words = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", dict: "an object"}
        raise bad_request(f"{name} must be {words[kind]}, got {value!r}", name)
    return float(value) if kind is float else value


@dataclass
class ParsedRequest:
    """A request body reduced to what the server acts on.

    ``prompts`` holds, per prompt: a string or token ids (completions) or a list of messages
    (chat). ``settings`` holds the unmask settings the request set (CLI flag names, typed); the
    server defaults fill in the rest later."""

    kind: str  # "chat" | "completion"
    prompts: list[Any]
    model: str | None = None
    n: int = 1
    stream: bool = False
    include_usage: bool = False
    stop: list[str] = field(default_factory=list)
    max_tokens: int | None = None
    max_tokens_field: str = "max_tokens"
    stream_canvas: bool = False
    settings: dict[str, Any] = field(default_factory=dict)


def parse_request(body: Any, kind: str) -> ParsedRequest:
    """Type-check a request body of ``kind`` ("chat" or "completion"); raise :class:`ApiError`."""
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    specific = CHAT_FIELDS if kind == "chat" else COMPLETION_FIELDS
    types: dict[str, Any] = {**sampling_field_types(), **SERVE_FIELDS, **COMMON_FIELDS, **specific}
    for name in sorted(body):
        if name not in types and name not in NEUTRAL and name not in IGNORED:
            hint = " (it names a file on the server: set it with the server's command line)" if name in SERVER_ONLY else ""
            raise bad_request(f"unrecognized request argument: {name}{hint}", name)
    values: dict[str, Any] = {}
    for name, value in body.items():
        if value is None or name in IGNORED:
            continue
        if name in NEUTRAL:
            if value not in NEUTRAL[name]:
                raise bad_request(f"{name}={value!r} is not supported by this server (masked diffusion decoding)", name)
            continue
        values[name] = check_type(name, value, types[name])

    req = ParsedRequest(kind=kind, prompts=_prompts(values, kind), model=values.get("model"))
    req.n = values.get("n", 1)
    if req.n < 1:
        raise bad_request(f"n must be >= 1, got {req.n}", "n")
    req.stream = values.get("stream", False)
    opts = values.get("stream_options") or {}
    for key, value in opts.items():
        if key != "include_usage":
            raise bad_request(f"unrecognized stream option: {key}", "stream_options")
        req.include_usage = check_type("stream_options.include_usage", value, bool)
    req.stop = _stop(values.get("stop"))
    req.stream_canvas = values.get("stream_canvas", False)
    if req.stream_canvas and not req.stream:
        raise bad_request("stream_canvas needs stream: true", "stream_canvas")
    req.max_tokens, req.max_tokens_field = _max_tokens(values)

    fields = sampling_field_types()
    req.settings = {k: v for k, v in values.items() if k in fields and k != "max_new_tokens"}
    return req


def _max_tokens(values: dict[str, Any]) -> tuple[int | None, str]:
    """The token budget and the field it came from (max_tokens, max_completion_tokens or
    unmask's max_new_tokens: all three mean the same; conflicting values are an error)."""
    given = [(k, values[k]) for k in ("max_tokens", "max_completion_tokens", "max_new_tokens") if k in values]
    if not given:
        return None, "max_tokens"
    name, value = given[0]
    for other, v in given[1:]:
        if v != value:
            raise bad_request(f"{name}={value} and {other}={v} disagree; give one of them", other)
    if value < 1:
        raise bad_request(f"{name} must be >= 1, got {value}", name)
    return value, name


def _stop(value: Any) -> list[str]:
    if value is None:
        return []
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise bad_request("stop must be a string or a list of strings", "stop")
    if len(stops) > MAX_STOP_STRINGS:
        raise bad_request(f"stop takes at most {MAX_STOP_STRINGS} strings, got {len(stops)}", "stop")
    if any(s == "" for s in stops):
        raise bad_request("stop strings must not be empty", "stop")
    return list(stops)


def _prompts(values: dict[str, Any], kind: str) -> list[Any]:
    if kind == "chat":
        if "messages" not in values:
            raise bad_request("messages is required", "messages")
        return [_messages(values["messages"])]
    if "prompt" not in values:
        raise bad_request("prompt is required", "prompt")
    prompt = values["prompt"]
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list) and prompt:
        if all(isinstance(p, str) for p in prompt):
            return list(prompt)
        if all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
            return [list(prompt)]
        if all(isinstance(p, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in p) for p in prompt):
            return [list(p) for p in prompt]
    raise bad_request("prompt must be a string, a list of strings, or token ids (a list of integers or of lists)", "prompt")


def _messages(messages: Any) -> list[dict[str, str]]:
    """Messages as ``{"role", "content"}`` with text content (text parts are joined)."""
    if not isinstance(messages, list) or not messages:
        raise bad_request("messages must be a non-empty list", "messages")
    out = []
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise bad_request(f"{where} must be an object", where)
        role = m.get("role")
        if role not in ROLES:
            raise bad_request(f"{where}.role must be one of {', '.join(ROLES)}, got {role!r}", f"{where}.role")
        content = m.get("content")
        images: list[str] = []  # image_url parts (understanding models only, see Backend.image_prompt)
        if isinstance(content, list):
            parts = []
            for j, part in enumerate(content):
                if isinstance(part, dict) and part.get("type") == "image_url":
                    url = part.get("image_url", {}).get("url") if isinstance(part.get("image_url"), dict) else None
                    if not isinstance(url, str):
                        raise bad_request(f"{where}.content[{j}].image_url.url must be a string", f"{where}.content")
                    images.append(url)
                    continue
                if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                    raise bad_request(f"{where}.content[{j}]: only text and image_url parts are supported",
                                      f"{where}.content")
                parts.append(part["text"])
            content = "".join(parts)
        if not isinstance(content, str):
            raise bad_request(f"{where}.content must be a string or a list of text parts", f"{where}.content")
        out.append({"role": "system" if role == "developer" else role, "content": content,
                    **({"images": images} if images else {})})
    return out
