"""Gateway-consumed settings inside the client's start-up ``options``.

``PGOPTIONS="-c phigate.reason=INC-1234"`` carries the session's reason for
access. The gateway takes every ``phigate.*`` setting out (PostgreSQL would
reject the unknown prefix anyway) and forwards the rest unchanged.
"""

from __future__ import annotations

GATEWAY_PREFIX = "phigate."
REASON_SETTING = "phigate.reason"


def split_options(options: str) -> list[str]:
    """Split like PostgreSQL's pg_split_opts: whitespace separates, backslash escapes."""
    words: list[str] = []
    current: list[str] = []
    escaped = False
    in_word = False
    for char in options:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = in_word = True
        elif char.isspace():
            if in_word:
                words.append("".join(current))
                current, in_word = [], False
        else:
            current.append(char)
            in_word = True
    if in_word:
        words.append("".join(current))
    return words


def _join_options(words: list[str]) -> str:
    return " ".join(w.replace("\\", "\\\\").replace(" ", "\\ ") for w in words)


def consume_gateway_options(params: dict[str, str]) -> tuple[dict[str, str], str | None]:
    """Return (parameters to forward, reason) with every phigate.* setting removed."""
    forwarded = {k: v for k, v in params.items() if not k.startswith(GATEWAY_PREFIX)}
    settings = {k: v for k, v in params.items() if k.startswith(GATEWAY_PREFIX)}
    if "options" in params:
        kept: list[str] = []
        words = split_options(params["options"])
        i = 0
        while i < len(words):
            word = words[i]
            setting = None
            if word == "-c" and i + 1 < len(words):
                setting, i = words[i + 1], i + 2
            elif word.startswith("-c") and len(word) > 2:
                setting, i = word[2:], i + 1
            elif word.startswith("--"):
                setting, i = word[2:], i + 1
            else:
                kept.append(word)
                i += 1
                continue
            name, _, value = setting.partition("=")
            if name.lower().startswith(GATEWAY_PREFIX):
                settings[name.lower()] = value
            else:
                kept.extend(("-c", setting))
        if kept:
            forwarded["options"] = _join_options(kept)
        else:
            forwarded.pop("options", None)
    reason = settings.get(REASON_SETTING) or None
    return forwarded, reason
