"""Reading YAML as ansible writes it, for a first check with a line number.

Ansible's own YAML adds tags (``!vault``, ``!unsafe``); here any ``!tag`` is read as the value
it tags, so valid ansible YAML never fails this check. Ansible's later errors (from its own
parsing) do not always say where; YAML syntax errors found here always do.
"""

from __future__ import annotations

from typing import Any

import yaml

_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):  # type: ignore[misc,valid-type]
    pass


def _tagged(loader: yaml.SafeLoader, _suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)


_Loader.add_multi_constructor("!", _tagged)


class YamlError(ValueError):
    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


def load(text: str) -> Any:
    """The value of the YAML ``text``; YamlError with the line (1-based) of a syntax error."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a safe loader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        parts = [p.strip() for p in (exc.context, exc.problem) if p]
        raise YamlError(": ".join(parts) or "invalid YAML", mark.line + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        first = (str(exc).splitlines() or ["invalid YAML"])[0]
        raise YamlError(first, None) from None


def item_line(text: str, index: int) -> int | None:
    """The line (1-based) where item ``index`` of the top-level YAML sequence starts."""
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError:
        return None
    if isinstance(node, yaml.SequenceNode) and 0 <= index < len(node.value):
        return node.value[index].start_mark.line + 1
    return None
