"""Message templates a tenant may change: Jinja2 in a sandbox, plain text, bounded.

Context variables (the same names and shapes as ``Message.data``; all JSON values):

==========================  ===========================================================
``event``                   ``firing``, ``reminder``, ``acknowledged``, ``resolved``,
                            ``escalation``, ``flapping``, ``group``, ``summary`` or
                            ``test``
``status``                  the probe's latest status: ``success``, ``failed``,
                            ``timeout`` or ``error``
``error``                   the latest error, for a person (empty when none)
``response_time_ms``        the latest response time in milliseconds, or null
``status_code``             the latest HTTP status code (or other protocol code), or null
``since``                   when the alert started, ISO 8601 (``2026-12-02T14:03:05Z``)
``duration_seconds``        how long the alert has lasted (firing to now, or to resolution)
``link``                    the alert in the console (empty when not configured)
``target``                  the probe's target (the same as ``probe.target``)
``timezone``                IANA zone the ``datetime`` filter shows times in (default UTC)
``alert``                   ``id``, ``state`` (firing / acknowledged / resolved),
                            ``severity``, ``reason``, ``acknowledged_by``,
                            ``acknowledged_at``, ``note``, ``reminder_count``,
                            ``resolved_at``
``rule``                    ``id``, ``name``, ``description``, ``condition`` (readable:
                            ``3 consecutive failures``)
``probe``                   ``id``, ``name``, ``protocol``, ``target``
``tenant``                  ``id``, ``name``
``channel``                 ``id``, ``name``, ``kind``
``escalation``              (``escalation``) ``step`` (1, 2, …) and ``after_seconds``
``flapping``                (``flapping``, and a settled ``firing``/``resolved``)
                            ``changes``, ``window_seconds``, ``settle_seconds``,
                            ``settled`` (true once it settled)
``group``                   (``group``) ``key`` (``tenant``, ``group:<id>``,
                            ``rule:<id>``) and ``label`` (for a person)
``alerts``                  (``summary``, ``group``) a list of alerts, each with ``id``, ``state``,
                            ``status``, ``error``, ``since``, ``link``, ``probe`` (``name``,
                            ``target``) and ``rule`` (``name``)
``counts``                  (``summary``, ``group``) ``firing``, ``acknowledged``,
                            ``resolved``
``more``                    (``summary``, ``group``) how many more alerts it carries than
                            ``alerts`` lists
==========================  ===========================================================

Filters besides Jinja's usual text and list filters: ``datetime`` (an ISO string, Unix
seconds or a datetime → ``2026-12-02 14:03:05 UTC``, in ``timezone`` when set),
``duration`` (seconds → ``2 h 5 min``), ``ms`` (milliseconds → ``123 ms``).

Saving: ``validate_template`` refuses, with a line number, a syntax error, a variable or
field that does not exist (``{{ probe.nmae }}``: found in the source, so also in a branch
a sample would not take), a private name (``__class__``), constructs that are not
available (macros, includes, imports, recursive loops, namespaces), and then renders the
template against a full sample context with undefined names as errors.

Sending: ``render`` never raises. Undefined names render empty, as do nulls. If the
template fails at run time, the event's default template is used instead and the text
says so. The sandbox is Jinja's immutable one; on top of it every render has a time
budget, a loop-iteration budget and a budget of characters produced (captured blocks
included); repetition, concatenation and padding refuse results longer than
``MAX_VALUE_CHARS``; strings offer only methods that cannot grow them. The output is cut at
``MAX_SUBJECT_CHARS`` / ``MAX_BODY_CHARS``, and consumed lazily, so a template that would
print without end stops at the cap.
"""

from __future__ import annotations

import math
import re
import time
import traceback
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any, Callable, Iterable, Iterator, Literal, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jinja2 import (
    ChainableUndefined,
    Environment,
    StrictUndefined,
    TemplateSyntaxError,
    Undefined,
    meta,
    nodes,
    pass_context,
)
from jinja2 import filters as jinja_filters
from jinja2.exceptions import SecurityError, TemplateError as JinjaTemplateError, UndefinedError
from jinja2.nodes import EvalContext
from jinja2.runtime import Context, LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

MAX_TEMPLATE_CHARS = 10_000
MAX_SUBJECT_CHARS = 250
MAX_BODY_CHARS = 20_000
MAX_VALUE_CHARS = 50_000  # the longest string or list one expression may build
MAX_PRODUCED_CHARS = 500_000  # all text produced by one render, captured blocks included
MAX_ITERATIONS = 20_000  # loop iterations per render
MAX_RANGE = 10_000
RENDER_SECONDS = 1.0

Part = Literal["subject", "body"]


class TemplateError(ValueError):
    """A template that cannot be saved; ``message`` is for a person and names the line when it can."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line

    def __str__(self) -> str:
        return self.message


class _BudgetExceeded(SecurityError):
    pass


# -- the context's names, for validation


OBJECT_FIELDS: dict[str, tuple[str, ...]] = {
    "alert": ("id", "state", "severity", "reason", "acknowledged_by", "acknowledged_at", "note", "reminder_count",
              "resolved_at"),
    "rule": ("id", "name", "description", "condition"),
    "probe": ("id", "name", "protocol", "target"),
    "tenant": ("id", "name"),
    "channel": ("id", "name", "kind"),
    "counts": ("firing", "acknowledged", "resolved"),
    "escalation": ("step", "after_seconds"),
    "flapping": ("changes", "window_seconds", "settle_seconds", "settled"),
    "group": ("key", "label"),
}
VALUE_NAMES = ("event", "status", "error", "response_time_ms", "status_code", "since", "duration_seconds", "link",
               "target", "timezone", "alerts", "more")
CONTEXT_NAMES = frozenset(VALUE_NAMES) | frozenset(OBJECT_FIELDS)

SAMPLE_CONTEXT: dict[str, Any] = {
    "event": "firing",
    "status": "failed",
    "error": "connection refused",
    "response_time_ms": 1234.5,
    "status_code": 503,
    "since": "2026-01-01T08:00:00Z",
    "duration_seconds": 754,
    "link": "https://console.example.com/alerts/42",
    "target": "https://web-1.example.com/health",
    "timezone": "UTC",
    "alert": {"id": 42, "state": "firing", "severity": "critical", "reason": "3 consecutive failures",
              "acknowledged_by": "alice",
              "acknowledged_at": "2026-01-01T08:05:00Z", "note": "looking into it", "reminder_count": 2,
              "resolved_at": "2026-01-01T08:12:34Z"},
    "rule": {"id": 7, "name": "web is down", "description": "the public site answers", "condition":
             "3 consecutive failures"},
    "probe": {"id": 3, "name": "web-1", "protocol": "http", "target": "https://web-1.example.com/health"},
    "tenant": {"id": 1, "name": "acme"},
    "channel": {"id": 5, "name": "ops webhook", "kind": "webhook"},
    "alerts": [
        {"id": 42, "state": "firing", "status": "failed", "error": "connection refused",
         "since": "2026-01-01T08:00:00Z", "link": "https://console.example.com/alerts/42",
         "probe": {"name": "web-1", "target": "https://web-1.example.com/health"}, "rule": {"name": "web is down"}},
        {"id": 43, "state": "acknowledged", "status": "timeout", "error": "no answer within 5 s",
         "since": "2026-01-01T07:30:00Z", "link": "https://console.example.com/alerts/43",
         "probe": {"name": "db-1", "target": "db-1.example.com:5432"}, "rule": {"name": "database reachable"}},
    ],
    "counts": {"firing": 1, "acknowledged": 1, "resolved": 0},
    "more": 0,
    "escalation": {"step": 1, "after_seconds": 900},
    "flapping": {"changes": 6, "window_seconds": 600, "settle_seconds": 600, "settled": False},
    "group": {"key": "group:4", "label": "web servers"},
}


def sample_context(event: str = "firing") -> dict[str, Any]:
    """A full context for previews and validation, as ``event`` (a resolved alert's probe is up again)."""
    context = {**SAMPLE_CONTEXT, "event": event}
    if event in ("acknowledged", "resolved"):
        context["alert"] = {**SAMPLE_CONTEXT["alert"], "state": event}
    if event == "resolved":
        context.update(status="success", error="", status_code=200, response_time_ms=87.2)
    return context


# -- default templates

_DETAILS = """\
Target:         {{ target }}
Status:         {{ status }}{% if status_code %} ({{ status_code }}){% endif %}
Error:          {{ error or "none" }}
Response time:  {{ response_time_ms | ms }}
Since:          {{ since | datetime }}{% if duration_seconds %} (for {{ duration_seconds | duration }}){% endif %}
Rule:           {{ rule.name }}{% if rule.condition %} ({{ rule.condition }}){% endif %}
{% if link %}

{{ link }}
{% endif %}
"""

_DOWN = '{% if status != "success" %}is down{% else %}fired "{{ rule.name }}"{% endif %}'

DEFAULT_TEMPLATES: dict[str, tuple[str, str]] = {
    "firing": (
        '[FIRING] {{ probe.name }}{% if status != "success" %} is down{% else %}: {{ rule.name }}{% endif %}',
        f"{{{{ probe.name }}}} {_DOWN}.\n\n{_DETAILS}",
    ),
    "reminder": (
        '[REMINDER] {{ probe.name }}{% if status != "success" %} is still down{% else %}: {{ rule.name }}{% endif %}',
        "{{ probe.name }} is still "
        '{% if status != "success" %}down{% else %}firing "{{ rule.name }}"{% endif %}'
        "{% if duration_seconds %}, for {{ duration_seconds | duration }}{% endif %}"
        "{% if alert.reminder_count %} (reminder {{ alert.reminder_count }}){% endif %}.\n\n" + _DETAILS,
    ),
    "acknowledged": (
        "[ACKNOWLEDGED] {{ probe.name }}{% if alert.acknowledged_by %} by {{ alert.acknowledged_by }}{% endif %}",
        "{{ alert.acknowledged_by or 'Someone' }} acknowledged the alert on {{ probe.name }}"
        "{% if alert.acknowledged_at %} at {{ alert.acknowledged_at | datetime }}{% endif %}.\n"
        "{% if alert.note %}Note: {{ alert.note }}\n{% endif %}\n" + _DETAILS,
    ),
    "resolved": (
        '[RESOLVED] {{ probe.name }}{% if status == "success" %} is up again{% else %}: {{ rule.name }}{% endif %}',
        '{{ probe.name }} {% if status == "success" %}is up again{% else %}no longer fires "{{ rule.name }}"'
        "{% endif %}{% if duration_seconds %} after {{ duration_seconds | duration }}{% endif %}.\n\n"
        "Target:         {{ target }}\n"
        "Status:         {{ status }}{% if status_code %} ({{ status_code }}){% endif %}\n"
        "Response time:  {{ response_time_ms | ms }}\n"
        "Started:        {{ since | datetime }}\n"
        "Resolved:       {{ alert.resolved_at | datetime }}\n"
        "Rule:           {{ rule.name }}\n"
        "{% if link %}\n{{ link }}\n{% endif %}",
    ),
    "summary": (
        "[SUMMARY] {{ counts.firing or 0 }} firing, {{ counts.acknowledged or 0 }} acknowledged"
        "{% if tenant.name %} ({{ tenant.name }}){% endif %}",
        "Open alerts{% if tenant.name %} of {{ tenant.name }}{% endif %}: {{ counts.firing or 0 }} firing, "
        "{{ counts.acknowledged or 0 }} acknowledged, {{ counts.resolved or 0 }} resolved since the last summary.\n\n"
        "{% for a in alerts %}"
        "- [{{ a.state | upper }}] {{ a.probe.name }} ({{ a.probe.target }}): {{ a.status }}"
        "{% if a.error %}, {{ a.error }}{% endif %}, since {{ a.since | datetime }}\n"
        "{% if a.link %}  {{ a.link }}\n{% endif %}"
        "{% else %}No alert is open.\n{% endfor %}"
        "{% if more %}… and {{ more }} more.\n{% endif %}"
        "{% if link %}\n{{ link }}\n{% endif %}",
    ),
    "escalation": (
        "[ESCALATION] {{ probe.name }} is not acknowledged"
        "{% if escalation.after_seconds %} after {{ escalation.after_seconds | duration }}{% endif %}",
        "Nobody has acknowledged the alert on {{ probe.name }}"
        "{% if escalation.after_seconds %} in {{ escalation.after_seconds | duration }}{% endif %}"
        " (escalation step {{ escalation.step }}).\n\n" + _DETAILS,
    ),
    "flapping": (
        "[FLAPPING] {{ probe.name }} keeps changing state",
        "{{ probe.name }} changed state {{ flapping.changes }} times in {{ flapping.window_seconds | duration }}: "
        "it is flapping. No more messages are sent for it until it has been stable for "
        "{{ flapping.settle_seconds | duration }}; then one tells its settled state.\n\n" + _DETAILS,
    ),
    "group": (
        "[{% if counts.firing %}FIRING:{{ counts.firing }}{% endif %}"
        "{% if counts.firing and counts.resolved %} {% endif %}"
        "{% if counts.resolved %}RESOLVED:{{ counts.resolved }}{% endif %}"
        "{% if not counts.firing and not counts.resolved %}GROUP{% endif %}] "
        "{{ group.label or rule.name }}",
        "{{ group.label or rule.name }}{% if tenant.name %} ({{ tenant.name }}){% endif %}: "
        "{{ counts.firing or 0 }} firing, {{ counts.resolved or 0 }} resolved.\n\n"
        "{% for a in alerts %}"
        "- [{{ a.state | upper }}] {{ a.probe.name }} ({{ a.probe.target }}): {{ a.status }}"
        "{% if a.error %}, {{ a.error }}{% endif %}, since {{ a.since | datetime }}\n"
        "{% if a.link %}  {{ a.link }}\n{% endif %}"
        "{% endfor %}"
        "{% if more %}… and {{ more }} more.\n{% endif %}"
        "{% if link %}\n{{ link }}\n{% endif %}",
    ),
    "test": (
        '[TEST] Notification test{% if channel.name %} for "{{ channel.name }}"{% endif %}',
        'This is a test notification{% if channel.name %} for the channel "{{ channel.name }}"'
        "{% if channel.kind %} ({{ channel.kind }}){% endif %}{% endif %}"
        "{% if tenant.name %} of {{ tenant.name }}{% endif %}. If you can read it, the channel works.\n",
    ),
}


# -- budgets


@dataclass
class _Budget:
    deadline: float
    iterations: int = 0
    produced: int = 0


_BUDGET: ContextVar[_Budget | None] = ContextVar("template_budget", default=None)


def _tick(iterations: int = 0, produced: int = 0) -> None:
    budget = _BUDGET.get()
    if budget is None:
        return
    budget.iterations += iterations
    budget.produced += produced
    if budget.iterations > MAX_ITERATIONS:
        raise _BudgetExceeded(f"loops ran more than {MAX_ITERATIONS} times")
    if budget.produced > MAX_PRODUCED_CHARS:
        raise _BudgetExceeded(f"the template produced more than {MAX_PRODUCED_CHARS} characters")
    if time.monotonic() > budget.deadline:
        raise _BudgetExceeded(f"rendering took longer than {RENDER_SECONDS:g} s")


def deep_size(value: Any, limit: int = MAX_VALUE_CHARS) -> int:
    """The characters and items ``value`` would take once written out, counting shared parts each time.

    The walk stops once ``limit`` is passed, so it costs at most about ``limit`` steps.
    """
    total = 0
    todo = [value]
    while todo and total <= limit:
        item = todo.pop()
        if isinstance(item, (str, bytes)):
            total += len(item)
        elif isinstance(item, dict):
            total += 1
            todo.extend(item.keys())
            todo.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            total += 1
            todo.extend(item)
        elif isinstance(item, int) and not isinstance(item, bool):
            total += max(1, item.bit_length() // 3)
        else:
            total += 1
    return total


def _check_size(size: int) -> None:
    if size > MAX_VALUE_CHARS:
        raise SecurityError(f"a value longer than {MAX_VALUE_CHARS} characters cannot be built in a template")


def _check_value(value: Any) -> None:
    _check_size(deep_size(value))


def _iterate(iterable: Any) -> Iterator[Any]:
    """Wraps every ``for`` loop's iterable: each item counts against the render's budget."""
    for item in iterable:
        _tick(iterations=1)
        yield item


def _produce(value: Any) -> Any:
    """Wraps every piece of output (captured blocks included): its length counts against the budget."""
    if value is None or isinstance(value, Undefined):
        return value
    size = deep_size(value, MAX_PRODUCED_CHARS)
    _check_size(size)
    _tick(produced=size)
    return value


def _concat(*parts: Any) -> str:
    """The ``~`` operator with a bound on the result."""
    _check_size(sum(deep_size(part) for part in parts if not isinstance(part, Undefined)))
    return "".join(str(part) for part in parts)


_PRINTF_WIDTH = re.compile(r"%[-#0 +]*(?:\*|\d{4,})|%[-#0 +]*\d*\.(?:\*|\d{4,})")


def _check_printf(template: Any) -> None:
    if isinstance(template, str) and _PRINTF_WIDTH.search(template):
        raise SecurityError("format widths and precisions above 999 are not available in templates")


# -- the environment

# Methods a template may call on strings, lists and dicts: none of them can grow a value.
_SAFE_METHODS: dict[type, frozenset[str]] = {
    str: frozenset({"lower", "upper", "title", "capitalize", "casefold", "swapcase", "strip", "lstrip", "rstrip",
                    "startswith", "endswith", "split", "rsplit", "splitlines", "partition", "rpartition", "count",
                    "find", "rfind", "index", "rindex", "removeprefix", "removesuffix", "isdigit", "isalpha",
                    "isalnum", "isspace", "islower", "isupper", "isnumeric", "isdecimal"}),
    list: frozenset({"index", "count"}),
    tuple: frozenset({"index", "count"}),
    dict: frozenset({"get", "keys", "values", "items"}),
    LoopContext: frozenset({"cycle", "changed"}),
}


def _zone(context: Context) -> ZoneInfo | None:
    name = context.get("timezone")
    if not isinstance(name, str) or not name or name.upper() == "UTC":
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _as_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        moment = datetime.fromtimestamp(value, timezone.utc)
    elif isinstance(value, str) and value.strip():
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


@pass_context
def format_datetime(context: Context, value: Any) -> str:
    """An instant as ``2026-12-02 14:03:05 UTC``, or in the context's ``timezone`` with its name."""
    moment = _as_datetime(value)
    if moment is None:
        return "" if value is None or isinstance(value, Undefined) else str(value)
    zone = _zone(context)
    if zone is None:
        return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"{moment.astimezone(zone).strftime('%Y-%m-%d %H:%M:%S')} ({zone.key})"


def format_duration(value: Any) -> str:
    """Seconds as ``45 s``, ``12 min``, ``2 h 5 min`` or ``3 d 4 h``."""
    if value is None or isinstance(value, (Undefined, bool)):
        return ""
    try:
        seconds = int(float(value))
    except (TypeError, ValueError, OverflowError):
        return ""
    if seconds < 0:
        return ""
    if seconds < 60:
        return f"{seconds} s"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if seconds < 3600:
        return f"{minutes} min"
    if seconds < 86400:
        rest = minutes % 60
        return f"{hours} h {rest} min" if rest else f"{hours} h"
    rest = hours % 24
    return f"{days} d {rest} h" if rest else f"{days} d"


def format_ms(value: Any) -> str:
    """A response time in milliseconds as ``123 ms``, ``4.5 ms`` or ``12.3 s``; ``n/a`` when there is none."""
    if value is None or isinstance(value, (Undefined, bool)):
        return "n/a"
    try:
        ms = float(value)
    except (TypeError, ValueError):
        return "n/a"
    if not math.isfinite(ms) or ms < 0:
        return "n/a"
    if ms >= 10_000:
        return f"{ms / 1000:.1f} s"
    return f"{ms:.1f} ms" if ms < 10 else f"{ms:.0f} ms"


def _materialised(value: Any) -> Any:
    """A lazy sequence (``map``, ``select`` …) as a list, refusing one longer than the value bound."""
    if isinstance(value, (str, bytes, list, tuple, dict, set, frozenset, int, float, bool, Undefined)) \
            or value is None or not hasattr(value, "__iter__"):
        return value
    items = []
    for item in value:
        items.append(item)
        _check_size(len(items))
    return items


def _grows(name: str, value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Refuse the arguments of a filter that would make its result much longer than its input."""

    def argument(index: int, key: str, default: Any) -> Any:
        return args[index] if len(args) > index else kwargs.get(key, default)

    text_size = deep_size(value)
    if name == "center":
        _check_size(int(argument(0, "width", 80)))
    elif name == "indent":
        width = argument(0, "width", 4)
        lines = str(value).count("\n") + 1
        _check_size(text_size + lines * (len(width) if isinstance(width, str) else int(width)))
    elif name == "replace":
        old, new = str(argument(0, "old", "")), str(argument(1, "new", ""))
        text = str(value)
        hits = len(text) + 1 if old == "" else text.count(old)
        _check_size(len(text) + hits * max(0, len(new) - len(old)))
    elif name == "format":
        _check_printf(value)
    elif name == "join":
        items = len(value) if isinstance(value, (list, tuple, str, dict)) else 1
        _check_size(text_size + deep_size(argument(0, "d", "")) * items)
    elif name == "wordwrap":
        width = max(int(argument(0, "width", 79)), 1)
        wrap = argument(2, "wrapstring", None)
        _check_size(text_size + (text_size // width + 1) * (len(wrap) if isinstance(wrap, str) else 1))
    elif name == "slice":
        _check_size(int(argument(0, "slices", 1)))
    elif name == "tojson":
        indent = argument(0, "indent", None)
        if indent is not None and int(indent) > 8:
            raise SecurityError("tojson indents at most 8")
        _check_size(text_size * (2 + (int(indent) if indent else 0)))


def _guarded(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """A built-in filter that refuses inputs, arguments and results beyond the value bound."""

    def guarded(*args: Any, **kwargs: Any) -> Any:
        _tick()
        passed = 1 if args and isinstance(args[0], (Context, EvalContext, Environment)) else 0
        head, value, rest = args[:passed], _materialised(args[passed]) if len(args) > passed else None, \
            args[passed + 1:]
        for item in (value, *rest, *kwargs.values()):
            _check_value(item)
        _grows(name, value, rest, kwargs)
        result = function(*head, value, *rest, **kwargs) if len(args) > passed else function(*args, **kwargs)
        result = _materialised(result)
        _check_value(result)
        return result

    guarded.__name__ = getattr(function, "__name__", name)
    if hasattr(function, "jinja_pass_arg"):  # pass_context / pass_eval_context / pass_environment
        guarded.jinja_pass_arg = function.jinja_pass_arg  # type: ignore[attr-defined]
    return guarded


_FILTERS = ("abs", "attr", "batch", "capitalize", "center", "count", "d", "default", "dictsort", "first", "float",
            "format", "groupby", "indent", "int", "items", "join", "last", "length", "list", "lower", "map", "max",
            "min", "reject", "rejectattr", "replace", "reverse", "round", "select", "selectattr", "slice", "sort",
            "string", "sum", "title", "tojson", "trim", "truncate", "unique", "upper", "urlencode", "wordcount",
            "wordwrap")


class _GuardedEnvironment(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, undefined: type[Undefined]) -> None:
        super().__init__(autoescape=False, undefined=undefined, keep_trailing_newline=True,
                         finalize=lambda value: "" if value is None else value)
        self.filters = {name: _guarded(name, jinja_filters.FILTERS[name]) for name in _FILTERS}
        self.filters.update(datetime=format_datetime, duration=format_duration, ms=format_ms)
        self.globals = {"range": self._range, "dict": dict, "_iterate": _iterate, "_produce": _produce,
                        "_concat": _concat}

    @staticmethod
    def _range(*args: int) -> range:
        numbers = range(*args)
        if len(numbers) > MAX_RANGE:
            raise SecurityError(f"range() is limited to {MAX_RANGE} numbers")
        return numbers

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if not super().is_safe_attribute(obj, attr, value):
            return False
        if callable(value):
            for kind, names in _SAFE_METHODS.items():
                if isinstance(obj, kind):
                    return attr in names
            return False
        return True

    def unsafe_undefined(self, obj: Any, attribute: str) -> Undefined:
        what = {str: "text", list: "a list", tuple: "a list", dict: "a mapping"}.get(type(obj), type(obj).__name__)
        hint = (f"private names such as {attribute} are not available" if attribute.startswith("_")
                else f"{attribute} of {what} is not available in templates")
        return self.undefined(hint, name=attribute, obj=obj, exc=SecurityError)

    def wrap_str_format(self, value: Any) -> None:
        return None  # str.format is not among the safe methods; the format filter is bounded

    def getattr(self, obj: Any, attribute: str) -> Any:
        _tick()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _tick()
        return super().getitem(obj, argument)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        _tick()
        return super().call(__context, __obj, *args, **kwargs)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _tick()
        if operator == "*":
            for sequence, count in ((left, right), (right, left)):
                if isinstance(sequence, (str, list, tuple)) and isinstance(count, int) and count > 0:
                    _check_size(deep_size(sequence) * count)
        elif operator == "+":
            if isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)):
                _check_size(deep_size(left) + deep_size(right))
        elif operator == "**":
            if isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and \
                    right * max(abs(left).bit_length(), 1) > 10_000:
                raise SecurityError("the result of ** would be too large")
        elif operator == "%":
            _check_printf(left)
            _check_value(right)
        return super().call_binop(context, operator, left, right)


_FORBIDDEN: tuple[tuple[type[nodes.Node], str], ...] = (
    (nodes.Macro, "macros"),
    (nodes.CallBlock, "call blocks"),
    (nodes.Include, "include"),
    (nodes.Import, "import"),
    (nodes.FromImport, "import"),
    (nodes.Extends, "extends"),
    (nodes.NSRef, "namespace assignments"),
)


class _Guard(NodeTransformer):
    """Routes loops, output and ``~`` through the budget-keeping helpers."""

    @staticmethod
    def _call(name: str, args: list[nodes.Expr], lineno: int) -> nodes.Call:
        call = nodes.Call(nodes.Name(name, "load"), args, [], None, None)
        call.set_lineno(lineno)
        return call

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = self._call("_iterate", [node.iter], node.lineno)
        return node

    def visit_Output(self, node: nodes.Output) -> nodes.Node:
        self.generic_visit(node)
        node.nodes = [self._call("_produce", [child], child.lineno or node.lineno) for child in node.nodes]
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return self._call("_concat", list(node.nodes), node.lineno)


_ENVIRONMENTS: dict[bool, _GuardedEnvironment] = {}


def _environment(strict: bool) -> _GuardedEnvironment:
    if strict not in _ENVIRONMENTS:
        _ENVIRONMENTS[strict] = _GuardedEnvironment(StrictUndefined if strict else ChainableUndefined)
    return _ENVIRONMENTS[strict]


def _line(error: BaseException) -> int | None:
    """The template line a runtime error happened on, from Jinja's rewritten traceback."""
    lineno = getattr(error, "lineno", None)
    if isinstance(lineno, int):
        return lineno
    lines = [frame.lineno for frame in traceback.extract_tb(error.__traceback__) if frame.filename == "<template>"]
    return lines[-1] if lines else None


def _at(line: int | None, text: str) -> str:
    return f"line {line}: {text}" if line else text


def _parse(source: str) -> nodes.Template:
    if len(source) > MAX_TEMPLATE_CHARS:
        raise TemplateError(f"the template is {len(source)} characters long; at most {MAX_TEMPLATE_CHARS}")
    try:
        tree = _environment(True).parse(source)
    except TemplateSyntaxError as error:
        raise TemplateError(_at(error.lineno, error.message or "syntax error"), error.lineno) from None
    for kind, what in _FORBIDDEN:
        found = next(iter(tree.find_all(kind)), None)
        if found is not None:
            raise TemplateError(_at(found.lineno, f"{what} are not available in notification templates"),
                                found.lineno)
    for loop in tree.find_all(nodes.For):
        if loop.recursive:
            raise TemplateError(_at(loop.lineno, "recursive loops are not available in notification templates"),
                                loop.lineno)
    return tree


@lru_cache(maxsize=512)
def _compile(source: str, strict: bool) -> Any:
    """The guarded, compiled template for ``source``; raises ``TemplateError``."""
    tree = _Guard().visit(_parse(source))
    environment = _environment(strict)
    tree.set_environment(environment)
    try:
        return environment.from_string(tree)
    except JinjaTemplateError as error:  # e.g. an unknown filter or test
        line = getattr(error, "lineno", None)
        raise TemplateError(_at(line, getattr(error, "message", None) or str(error)), line) from None


# -- validation


def _check_names(tree: nodes.Template) -> None:
    """Unknown variables, unknown fields of the context's objects, private names: found in the source."""
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        attr = node.attr if isinstance(node, nodes.Getattr) else (
            node.arg.value if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str) else None)
        if attr is not None and attr.startswith("_"):
            raise TemplateError(_at(node.lineno, f"names starting with _ ({attr}) are not available in templates"),
                                node.lineno)
    known = CONTEXT_NAMES | {"range", "dict", "loop"}
    unknown = meta.find_undeclared_variables(tree) - known
    if unknown:
        first = min((name for name in tree.find_all(nodes.Name) if name.name in unknown), key=lambda n: n.lineno)
        raise TemplateError(_at(first.lineno, f"unknown variable {first.name!r} "
                                              f"(available: {', '.join(sorted(CONTEXT_NAMES))})"), first.lineno)
    assigned = {name.name for name in tree.find_all(nodes.Name) if name.ctx in ("store", "param")}
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        if not isinstance(node.node, nodes.Name) or node.node.name not in OBJECT_FIELDS or node.node.name in assigned:
            continue
        attr = node.attr if isinstance(node, nodes.Getattr) else (
            node.arg.value if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str) else None)
        fields = OBJECT_FIELDS[node.node.name]
        if attr is not None and attr not in fields and attr not in _SAFE_METHODS[dict]:
            raise TemplateError(_at(node.lineno, f"{node.node.name} has no field {attr!r} "
                                                 f"(fields: {', '.join(fields)})"), node.lineno)


def validate_template(text: str) -> None:
    """Refuse a template that could not be rendered as written; raises ``TemplateError`` naming the line."""
    tree = _parse(text)
    template = _compile(text, True)  # unknown filters and tests, with their line
    _check_names(tree)
    for event in DEFAULT_TEMPLATES:
        try:
            _consume(template.generate(sample_context(event)), MAX_BODY_CHARS)
        except UndefinedError as error:
            line = _line(error)
            raise TemplateError(_at(line, _undefined_text(error)), line) from None
        except Exception as error:  # noqa: BLE001 (whatever a template does wrong is the tenant's to fix)
            line = _line(error)
            raise TemplateError(_at(line, _runtime_text(error)), line) from None


def _undefined_text(error: UndefinedError) -> str:
    text = str(error.message or error)
    match = re.match(r"'(\w+)' is undefined", text)
    if match:
        return f"unknown variable {match.group(1)!r}"
    match = re.match(r"'.*' has no attribute '(\w+)'", text)
    if match:
        return f"no field {match.group(1)!r} here"
    return text


def _runtime_text(error: BaseException) -> str:
    if isinstance(error, SecurityError):
        return f"not allowed: {error}"
    return str(error) or type(error).__name__


# -- rendering


def _consume(chunks: Iterable[str], limit: int) -> tuple[str, bool]:
    """At most ``limit`` characters of a lazily rendered template, within the render budget; (text, cut)."""
    budget = _Budget(deadline=time.monotonic() + RENDER_SECONDS)
    token = _BUDGET.set(budget)
    pieces: list[str] = []
    size = 0
    iterator = iter(chunks)
    try:
        for chunk in iterator:
            pieces.append(chunk)
            size += len(chunk)
            if size > limit:
                return "".join(pieces)[:limit], True
        return "".join(pieces), False
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()
        _BUDGET.reset(token)


def _finish(text: str, part: Part, cut: bool) -> str:
    if part == "subject":
        line = " ".join(text.split())
        return line if len(line) <= MAX_SUBJECT_CHARS else line[: MAX_SUBJECT_CHARS - 1] + "…"
    body = "\n".join(line.rstrip() for line in text.strip("\n").splitlines())
    body = _BLANK_RUNS.sub("\n\n", body)  # block tags on lines of their own leave blank lines
    if cut:
        body = body[: MAX_BODY_CHARS - 60].rstrip() + f"\n… (cut at {MAX_BODY_CHARS} characters)"
    return body


_BLANK_RUNS = re.compile(r"\n{3,}")


def _render(source: str, context: Mapping[str, Any], part: Part) -> str:
    limit = MAX_SUBJECT_CHARS * 4 if part == "subject" else MAX_BODY_CHARS
    text, cut = _consume(_compile(source, False).generate(dict(context)), limit)
    return _finish(text, part, cut)


def _default(event: Any, part: Part) -> str:
    subject, body = DEFAULT_TEMPLATES.get(event if isinstance(event, str) else "", DEFAULT_TEMPLATES["test"])
    return subject if part == "subject" else body


def render(template: str, context: Mapping[str, Any], *, part: Part = "body") -> str:
    """``template`` rendered with ``context``; never raises.

    ``part`` is ``subject`` (one line, cut at ``MAX_SUBJECT_CHARS``) or ``body`` (cut at
    ``MAX_BODY_CHARS``). If the template fails, the default template of ``context['event']``
    is used and the text says so.
    """
    try:
        return _render(template, context, part)
    except Exception as error:  # noqa: BLE001 (a notification must go out whatever the template does)
        problem = error.message if isinstance(error, TemplateError) else _at(_line(error), _runtime_text(error))
    fallback = _default(context.get("event"), part)
    try:
        text = _render(fallback, context, part)
    except Exception:  # noqa: BLE001 (the last resort below needs nothing from the context)
        probe = context.get("probe")
        name = probe.get("name") if isinstance(probe, Mapping) else None
        text = f"[{str(context.get('event') or 'notification').upper()}] {name or 'a probe'}"
    if part == "subject":
        return _finish(f"{text} [template error]", "subject", False)
    note = f"(The channel's message template failed ({problem}); the default template was used.)"
    return f"{text}\n\n{note}"


def render_message(subject_template: str | None, body_template: str | None,
                   context: Mapping[str, Any]) -> tuple[str, str]:
    """Subject and body for ``context``: the given templates, or the event's defaults where ``None``."""
    event = context.get("event")
    subject = render(subject_template if subject_template is not None else _default(event, "subject"), context,
                     part="subject")
    body = render(body_template if body_template is not None else _default(event, "body"), context, part="body")
    return subject, body


__all__ = [
    "CONTEXT_NAMES",
    "DEFAULT_TEMPLATES",
    "MAX_BODY_CHARS",
    "MAX_SUBJECT_CHARS",
    "MAX_TEMPLATE_CHARS",
    "OBJECT_FIELDS",
    "SAMPLE_CONTEXT",
    "TemplateError",
    "format_datetime",
    "format_duration",
    "format_ms",
    "render",
    "render_message",
    "sample_context",
    "validate_template",
]
