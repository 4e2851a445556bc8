"""Hand-made data files, each holding known faults at known lines (shared by the data tests)."""

from __future__ import annotations

import json
from pathlib import Path

# Classification JSONL. Line: fault.
#  1 ok               2 bad JSON           3 empty text         4 missing label
#  5 ok               6 blank (not a record)  7 a list, not an object
#  8 exact duplicate of 1 (case/punctuation differ)   9 duplicate of 5 with the other label
# 10 near duplicate of 11 (one word differs in a long text)  11 ok   12 integer label
CLASSIFICATION_JSONL = "\n".join([
    '{"text": "A wonderful, moving film.", "label": "pos"}',
    '{"text": "broken json", "label": "neg"',
    '{"text": "   ", "label": "neg"}',
    '{"text": "No label here"}',
    '{"text": "Dull and far too long.", "label": "neg"}',
    "",
    '["text", "label"]',
    '{"text": "a WONDERFUL moving film", "label": "pos"}',
    '{"text": "Dull and far too long!", "label": "pos"}',
    '{"text": "the cast is great and the story is told with care from the first scene to the very last frame while the music and the camera work keep every moment alive until the end of the film", "label": "pos"}',
    '{"text": "the cast is great and the story is told with care from the first scene to the very last frame while the music and the camera work keep every moment alive until the end of the movie", "label": "neg"}',
    '{"text": "Mixed types", "label": 3}',
]) + "\n"
CLASSIFICATION_REJECTS = [
    (2, "invalid JSON", None),
    (3, "empty field", "text"),
    (4, "missing field", "label"),
    (7, "not a JSON object", None),
    (12, "label type differs", "label"),
]

# CSV with a header on line 1. Line: fault.
#  2 ok  3 broken quote (closed quote followed by text)  4 ok  5 wrong number of fields
#  6-7 one row with a quoted two-line text (ok)  8 empty text  9 missing label (empty cell)
# 10 unclosed quote at the end of the file
CSV_TEXT = (
    "review,sentiment\n"
    "Loved every minute,pos\n"
    '"Half "quoted" text,neg\n'
    "Boring plot,neg\n"
    "too,many,fields\n"
    '"Two\nlines of praise",pos\n'
    ",neg\n"
    "No sentiment,\n"
    '"never closed,pos\n'
)
CSV_REJECTS = [
    (3, "bad CSV quoting", None),
    (5, "wrong number of CSV fields", None),
    (8, "empty field", "text"),
    (9, "empty field", "label"),
    (10, "bad CSV quoting", None),
]

CHAT_RECORDS = [
    {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]},
    {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"},
                  {"role": "assistant", "content": "4"}]},
    # 3: last turn is the user's
    {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yes?"},
                  {"role": "user", "content": "Bye"}]},
    # 4: unknown role
    {"messages": [{"role": "bot", "content": "Hi"}, {"role": "assistant", "content": "x"}]},
    # 5: empty content in the second turn
    {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": ""}]},
    # 6: two user turns in a row
    {"messages": [{"role": "user", "content": "Hi"}, {"role": "user", "content": "Hello?"},
                  {"role": "assistant", "content": "Hey"}]},
    # 7: a system turn in the middle
    {"messages": [{"role": "user", "content": "Hi"}, {"role": "system", "content": "x"},
                  {"role": "assistant", "content": "Hey"}]},
    # 8: messages is not a list
    {"messages": "Hi there"},
]
CHAT_REJECTS = [
    (3, "wrong role order", "messages"),
    (4, "bad role", "messages[0].role"),
    (5, "empty field", "messages[1].content"),
    (6, "wrong role order", "messages"),
    (7, "wrong role order", "messages"),
    (8, "bad messages", "messages"),
]


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def timed_records(n: int = 40) -> list[dict]:
    """Classification records with a time column (ties every 2 records) and a group column."""
    out = []
    for i in range(n):
        out.append({
            "text": f"review number {i} about film {i % 7} with words {i * 13 % 17}",
            "label": "pos" if i % 3 else "neg",
            "ts": f"2024-01-{1 + i // 2:02d}T10:00:00",
            "user": f"u{i % 6}",
        })
    return out
