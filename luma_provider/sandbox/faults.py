"""Fault-injection rules: make the fake gateway misbehave on purpose.

A rule is a JSON object::

    {"route": "submit", "kind": "status", "status": 429, "retry_after": 1,
     "times": 2, "skip": 0, "after_processing": false}

* ``route`` - submit | get | extend | tasks | download_url | media | ``*`` (any of them); the
  official flavour's routes are submit (video create) | get | list | delete | credits | image |
  upscale | audio | modify | reframe_video | reframe_image | ping | concepts;
* ``times`` - how many matching requests the rule hits before it is used up (default 1);
* ``skip`` - let the first *k* matching requests through untouched (default 0);
* ``after_processing`` - run the real handler first (so a submit *does* create the
  generation) and only then break the response: the "gateway took the job but the
  client saw an error" case.

Kinds and their extra fields:

* ``status`` - answer ``status`` with ``body`` (JSON object or string; default: the
  documented envelope for that status), ``headers`` and/or ``retry_after``;
* ``reset`` - drop the connection without any response;
* ``reset_mid_body`` / ``short_body`` - send headers (full Content-Length) and half the body, then close;
* ``delay`` - sleep ``seconds`` (default 5), then answer normally (always processes the request);
* ``html`` - an HTML error page (``status`` default 200, content-type text/html);
* ``truncated_json`` - 200 with the JSON body cut in half;
* ``empty`` - 200 with an empty body;
* ``unknown_state`` - the real response with its state replaced by ``"weird_new_state"``
  (always processes the request).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

ROUTES = (
    "submit",
    "get",
    "extend",
    "tasks",
    "download_url",
    "media",
    # official flavour (/dream-machine/v1)
    "list",
    "delete",
    "credits",
    "image",
    "upscale",
    "audio",
    "modify",
    "reframe_video",
    "reframe_image",
    "ping",
    "concepts",
    "*",
)
KINDS = (
    "status",
    "reset",
    "reset_mid_body",
    "short_body",
    "delay",
    "html",
    "truncated_json",
    "empty",
    "unknown_state",
)
#: Kinds that inherently need the real response, so they always run the handler.
ALWAYS_PROCESS = ("delay", "unknown_state")
WEIRD_STATE = "weird_new_state"


@dataclass
class FaultRule:
    """One validated rule plus its usage counters."""

    route: str = "*"
    kind: str = "status"
    times: int = 1
    skip: int = 0
    after_processing: bool = False
    status: int | None = None
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    retry_after: float | None = None
    seconds: float = 5.0
    seen: int = 0
    hits: int = 0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaultRule:
        """Build a rule from user JSON, rejecting unknown fields and values."""
        if not isinstance(data, dict):
            raise ValueError("a fault rule must be a JSON object")
        allowed = {
            "route",
            "kind",
            "times",
            "skip",
            "after_processing",
            "status",
            "body",
            "headers",
            "retry_after",
            "seconds",
        }
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ValueError(f"unknown fault rule field(s): {', '.join(unknown)}")
        rule = cls(**data)
        if rule.route not in ROUTES:
            raise ValueError(f"route must be one of {', '.join(ROUTES)}; got {rule.route!r}")
        if rule.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {rule.kind!r}")
        rule.times, rule.skip = int(rule.times), int(rule.skip)
        if rule.times < 1 or rule.skip < 0:
            raise ValueError("times must be >= 1 and skip >= 0")
        if rule.kind == "status" and rule.status is None:
            raise ValueError("a 'status' fault needs a 'status' code")
        if not isinstance(rule.headers, dict):
            raise ValueError("headers must be a JSON object")
        rule.headers = {str(k): str(v) for k, v in rule.headers.items()}
        if rule.retry_after is not None:
            rule.headers.setdefault("Retry-After", _num(rule.retry_after))
        rule.seconds = float(rule.seconds)
        return rule

    @property
    def used_up(self) -> bool:
        return self.hits >= self.times

    @property
    def processes_request(self) -> bool:
        """Whether the real handler runs (and so a submit creates a generation)."""
        return self.after_processing or self.kind in ALWAYS_PROCESS

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class FaultSet:
    """Ordered rules; the first applicable rule wins for a request."""

    def __init__(self) -> None:
        self.rules: list[FaultRule] = []

    def add(self, specs: list[dict[str, Any]] | dict[str, Any]) -> list[FaultRule]:
        """Validate all specs first so a bad list adds nothing."""
        items = specs if isinstance(specs, list) else [specs]
        rules = [FaultRule.from_dict(spec) for spec in items]
        self.rules.extend(rules)
        return rules

    def clear(self) -> None:
        self.rules.clear()

    def take(self, route: str) -> FaultRule | None:
        """Return the rule to apply to this request (counting it), or ``None``."""
        for rule in self.rules:
            if rule.used_up or rule.route not in ("*", route):
                continue
            rule.seen += 1
            if rule.seen <= rule.skip:
                continue
            rule.hits += 1
            return rule
        return None

    def as_list(self) -> list[dict[str, Any]]:
        return [rule.as_dict() for rule in self.rules]


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
