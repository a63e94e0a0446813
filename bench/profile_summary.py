"""Summarise py-spy collapsed stacks (``py-spy record --format raw``): where the time goes.

Usage: ``python bench/profile_summary.py bench/results/logs/profile-*.txt [--top 40]``.
Prints inclusive and self shares per function, plus shares for a few known cost centres.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_LINE = re.compile(r"^(.*) (\d+)$")
_FRAME = re.compile(r"^(.*) \((.*?):\d+\)$")

#: Cost centres: a label and a substring of a frame ("function (file)") that marks it.
CENTRES = [
    ("celery: task protocol / tracer (whole task)", "trace_task (celery/app/trace.py)"),
    ("notifier.deliver (claim..record)", "deliver (notifier/delivery.py)"),
    ("store.claim (Redis Lua)", "NotificationStore.claim"),
    ("store.accept (Redis Lua)", "NotificationStore.accept"),
    ("store.transition (Redis Lua)", "NotificationStore.transition"),
    ("validate_notification", "validate_notification (notifier/models.py)"),
    ("render", "TemplateRenderer.render (notifier/rendering.py)"),
    ("build_email (MIME)", "build_email (notifier/mime.py)"),
    ("as_bytes (MIME serialise)", "OutgoingEmail.as_bytes"),
    ("SMTP transport.send", "SMTPTransport.send"),
    ("result backend store_result", "store_result"),
    ("task_track_started / update_state", "update_state"),
    ("celery events (send_event)", "send_event"),
    ("logging", "(logging/__init__.py)"),
]


def frame_name(frame: str) -> str:
    match = _FRAME.match(frame)
    if not match:
        return frame
    func, path = match.groups()
    parts = Path(path).parts
    short = "/".join(parts[-2:]) if len(parts) >= 2 else path
    return f"{func} ({short})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args()
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    centres: Counter[str] = Counter()
    total = 0
    for path in args.files:
        for line in path.read_text().splitlines():
            match = _LINE.match(line)
            if not match:
                continue
            stack, count = match.group(1), int(match.group(2))
            frames = [frame_name(f) for f in stack.split(";")]
            total += count
            for name in set(frames):
                inclusive[name] += count
            own[frames[-1]] += count
            joined = ";".join(frames)
            for label, marker in CENTRES:
                if marker in joined:
                    centres[label] += count
    print(f"{total} samples (active time only) from {len(args.files)} file(s)\n")
    print("cost centres (inclusive):")
    for label, _ in CENTRES:
        print(f"  {100 * centres[label] / total:5.1f}%  {label}")
    print(f"\ntop {args.top} inclusive:")
    for name, count in inclusive.most_common(args.top):
        print(f"  {100 * count / total:5.1f}%  {name}")
    print(f"\ntop {args.top} self:")
    for name, count in own.most_common(args.top):
        print(f"  {100 * count / total:5.1f}%  {name}")


if __name__ == "__main__":
    main()
