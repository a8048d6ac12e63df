"""The grader's checking process: verdicts on the grade logs of notebooks, inside a sandbox.

    python grade_check.py        # started by tools/grade.py; frames on stdin and stdout

It runs only the library's checkers, on data: it never runs a student's code. For each request
``{"op": "grade", "labels": [...], "log": base64, "truncated": bool, "seed": int}`` it reads
the log with limits (lines, bytes, JSON, types), keeps the **last** record of each label of the
notebook's chapter (records of other exercises are counted and ignored), decodes each answer
with the wire format, and calls :func:`attnlab.exercises.regrade` under the grader's seed. A
student's function becomes a :class:`~attnlab.exercises._core.StandIn`: each call is sent to the
grader as ``{"op": "call", "id", "function" (first call only), "forbid", "args", "kwargs"}``
and the grader runs it in a sandbox of its own (tools/grade_runner.py). The answer is
``{"op": "verdicts", "verdicts": [{"exercise", "passed", "done", "message"}], "notes": [...]}``.
"""
from __future__ import annotations

import base64
import json
import os
import sys

from attnlab.exercises import REGISTRY, _core, _wire

IN = OUT = None                      # the frames' streams (main() sets them)

MAX_RECORDS = 2000                   # lines of a grade log that are read
MAX_MESSAGE = 2000                   # characters of a verdict's message


def read_raw() -> bytes | None:
    header = IN.read(4)
    if len(header) < 4:
        return None
    n, data = _wire.unpack_length(header), b""
    while len(data) < n:
        chunk = IN.read(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def read():
    data = read_raw()
    return None if data is None else json.loads(data)


def write(obj) -> None:
    OUT.write(_wire.pack(json.dumps(obj, allow_nan=False).encode()))


def parse(log: bytes, labels: list[str], truncated: bool) -> tuple[dict, list[str]]:
    """The last record of each of ``labels`` in ``log``, and notes on what was left out."""
    records, notes, bad, other, n = {}, [], 0, 0, 0
    if truncated:
        notes.append("the grade log was cut at its size limit")
    for raw in log.split(b"\n"):
        if not raw.strip():
            continue
        n += 1
        if n > MAX_RECORDS:
            notes.append(f"only the first {MAX_RECORDS:,} lines of the grade log were read")
            break
        if len(raw) > _core.MAX_RECORD + 1000:
            bad += 1
            continue
        try:
            record = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            bad += 1
            continue
        label = record.get("exercise") if isinstance(record, dict) else None
        if not isinstance(label, str):
            bad += 1
        elif label not in labels:
            other += 1
        else:
            records[label] = record                                     # the last one counts
    if bad:
        notes.append(f"{bad} unreadable line(s) of the grade log were skipped")
    if other:
        notes.append(f"{other} answer(s) to exercises of other chapters were ignored")
    return records, notes


class Channel:
    """Sends each call of a student's function to the grader, which runs it in a sandbox."""

    def __init__(self):
        self.ids: dict[int, int] = {}

    def __call__(self, data, args, kwargs):
        key = id(data)
        request = {"op": "call", "args": args, "kwargs": kwargs}
        if key not in self.ids:
            self.ids[key] = len(self.ids)
            request.update(function=data, forbid=list(self.forbid), allow=list(self.allow))
        request["id"] = self.ids[key]
        write(request)
        data = read_raw()
        if data is None:
            sys.exit(3)                                     # the grader went away
        try:                                # the student's sandbox wrote this: trust nothing
            return json.loads(data)
        except (UnicodeDecodeError, ValueError, RecursionError):
            return {"raised": "NotGradable", "message": "your function's answer was unreadable"}


def verdict(label: str, record: dict, seed: int, channel: Channel) -> dict:
    answer = record.get("answer")
    if not isinstance(answer, dict):
        why = ("too large to record" if "too_large" in record else
               "not recordable" if "unreadable" in record else "missing from the record")
        return {"exercise": label, "passed": False, "done": True,
                "message": f"Not yet. The answer was {why}, so it could not be checked."}
    channel.forbid, channel.allow = REGISTRY[label].forbid, REGISTRY[label].allow
    kept = {}
    try:
        for name, value in answer.items():
            if isinstance(name, str) and name in REGISTRY[label].answers:
                kept[name] = _wire.decode(value, lambda d: _core.StandIn(d, channel))
        feedback = _core.regrade(label, kept, seed)
    except (_wire.WireError, RecursionError, MemoryError) as e:
        return {"exercise": label, "passed": False, "done": True,
                "message": f"Not yet. The recorded answer could not be read ({e})."[:MAX_MESSAGE]}
    except Exception as e:  # noqa: BLE001 - a checker that failed on odd data: say so
        return {"exercise": label, "passed": False, "done": True,
                "message": f"Not yet. The checker failed on this answer ({type(e).__name__}: "
                           f"{e}).".replace("\n", " ")[:MAX_MESSAGE]}
    return {"exercise": label, "passed": bool(feedback.ok), "done": bool(feedback.done),
            "message": str(feedback)[:MAX_MESSAGE]}


def main() -> int:
    global IN, OUT
    OUT = os.fdopen(os.dup(1), "wb", buffering=0)      # frames only; print() goes to stderr
    os.dup2(2, 1)
    IN = os.fdopen(os.dup(0), "rb", buffering=0)
    while (request := read()) is not None:
        labels = [str(x) for x in request["labels"] if str(x) in REGISTRY]
        records, notes = parse(base64.b64decode(request["log"]), labels,
                               bool(request.get("truncated")))
        channel = Channel()
        verdicts = [verdict(label, records[label], int(request["seed"]), channel)
                    for label in labels if label in records]
        write({"op": "verdicts", "verdicts": verdicts, "notes": notes})
    return 0


if __name__ == "__main__":
    sys.exit(main())
