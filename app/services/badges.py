"""Shields-style flat SVG badges (a grey label, a coloured message), from a plain template.

Text widths are estimated from per-character widths of 11 px Verdana, which is what the
badge names as its font; both texts are XML-escaped.
"""

from __future__ import annotations

from html import escape

COLOURS = {"green": "#4c1", "yellow": "#dfb317", "orange": "#fe7d37", "red": "#e05d44", "grey": "#9f9f9f",
           "blue": "#007ec6"}
_NARROW = set("ijlI.,:;!|'()[] ")
_WIDE = set("mwMW%@")

_TEMPLATE = """<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="20" role="img" aria-label="{label}: {message}">
<title>{label}: {message}</title>
<linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient>
<clipPath id="r"><rect width="{width}" height="20" rx="3" fill="#fff"/></clipPath>
<g clip-path="url(#r)"><rect width="{label_width}" height="20" fill="#555"/><rect x="{label_width}" width="{message_width}" height="20" fill="{colour}"/><rect width="{width}" height="20" fill="url(#s)"/></g>
<g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" font-size="11">
<text x="{label_x}" y="15" fill="#010101" fill-opacity=".3">{label}</text><text x="{label_x}" y="14">{label}</text>
<text x="{message_x}" y="15" fill="#010101" fill-opacity=".3">{message}</text><text x="{message_x}" y="14">{message}</text>
</g>
</svg>
"""


def text_width(text: str) -> int:
    return round(sum(3.5 if char in _NARROW else 10.0 if char in _WIDE else 7.0 for char in text))


def render(label: str, message: str, colour: str) -> str:
    """The badge as SVG text; ``colour`` is a name of ``COLOURS`` or a ``#rrggbb`` value."""
    label_width = text_width(label) + 10
    message_width = text_width(message) + 10
    fill = COLOURS.get(colour, colour)
    return _TEMPLATE.format(width=label_width + message_width, label_width=label_width, message_width=message_width,
                            label_x=label_width / 2, message_x=label_width + message_width / 2,
                            label=escape(label, quote=True), message=escape(message, quote=True),
                            colour=escape(fill, quote=True))


STATUS_BADGES = {"success": ("up", "green"), "failed": ("down", "red"), "timeout": ("down", "red"),
                 "error": ("down", "red"), None: ("unknown", "grey")}


def status_badge(label: str, status: str | None) -> str:
    message, colour = STATUS_BADGES.get(status, ("unknown", "grey"))
    return render(label, message, colour)


def uptime_badge(label: str, percent: float | None) -> str:
    if percent is None:
        return render(label, "no data", "grey")
    colour = "green" if percent >= 99 else "yellow" if percent >= 95 else "orange" if percent >= 90 else "red"
    text = f"{percent:.2f}".rstrip("0").rstrip(".") + "%"
    return render(label, text, colour)


def response_time_badge(label: str, milliseconds: float | None) -> str:
    if milliseconds is None:
        return render(label, "no data", "grey")
    colour = "green" if milliseconds < 300 else "yellow" if milliseconds < 1000 else "orange"
    text = f"{milliseconds:.0f} ms" if milliseconds < 10_000 else f"{milliseconds / 1000:.1f} s"
    return render(label, text, colour)
