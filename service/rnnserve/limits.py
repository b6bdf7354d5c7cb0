"""What one call may cost: its work (batch rows x timesteps) and the size of its reply, checked before it runs.

`Budget.check(signature, batch, timesteps, ...)` refuses a call whose work or reply would exceed the settings
`max_work` and `max_reply_bytes`, with a 413 that names the limit, its setting and the figure the call would have
needed. The reply's size is computed from the signature's output (and state) shapes, so nothing runs and nothing
is allocated for a call that is refused.

`LargeCalls` runs the calls that pass but are large (more than `large_work` rows x timesteps) on threads of their
own, outside the executor: the dynamic batcher runs one call of a model at a time, so a long predict there would
hold every other session of that model behind it for its whole duration.
"""

from __future__ import annotations

from typing import NamedTuple

from rnnserve.batching.direct import DirectExecutor
from rnnserve.errors import PayloadTooLarge, _problem
from rnnserve.signature import ModelSignature, TensorInfo

JSON_BYTES_PER_VALUE = {"float32": 16, "int64": 21, "bool": 6}
"""The most bytes one value takes in a JSON reply, separator included (`-1.2345678e-38,`: orjson writes a float32's
shortest representation, 13.5 bytes on average on the bundled models' outputs)."""
BINARY_BYTES_PER_VALUE = {"float32": 4, "int64": 8, "bool": 1}


class WorkTooLarge(PayloadTooLarge):
    """A call's batch rows x timesteps exceed `max_work`."""

    type = _problem("work-too-large")
    title = "Too much work in one call"


class ReplyTooLarge(PayloadTooLarge):
    """A call's reply would exceed `max_reply_bytes`."""

    type = _problem("reply-too-large")
    title = "Reply too large"


class Budget(NamedTuple):
    max_work: int
    max_reply_bytes: int

    def check(self, sig: ModelSignature, batch: int, timesteps: int, *, binary: bool, return_state: bool) -> int:
        """The reply's size in bytes (an upper bound); `WorkTooLarge` or `ReplyTooLarge` past the budget."""
        work = batch * timesteps
        if work > self.max_work:
            raise WorkTooLarge(
                f"this call is {batch} rows x {timesteps} timesteps = {work} row-timesteps of work; the limit "
                f"(max_work) is {self.max_work}: split the sequences into chunks (a session carries the state)",
                limit=self.max_work,
                needed=work,
                setting="max_work",
            )
        size = reply_bytes(sig, batch, timesteps, binary=binary, return_state=return_state)
        if size > self.max_reply_bytes:
            form = "raw bytes" if binary else "JSON"
            raise ReplyTooLarge(
                f"the reply to this call would take up to {size} bytes as {form}; the limit (max_reply_bytes) is "
                f"{self.max_reply_bytes}: ask for fewer timesteps or rows"
                + ("" if binary else ", or for raw bytes (Accept: application/octet-stream)"),
                limit=self.max_reply_bytes,
                needed=size,
                setting="max_reply_bytes",
            )
        return size


def reply_bytes(sig: ModelSignature, batch: int, timesteps: int, *, binary: bool, return_state: bool) -> int:
    """An upper bound of a reply's size: every output (and state, when returned) at this batch and length."""
    per_value = BINARY_BYTES_PER_VALUE if binary else JSON_BYTES_PER_VALUE
    other = 16 if not binary else 8
    time_major = sig.time_major
    total = 0
    for info in sig.outputs:
        total += _values(info, batch, timesteps, time_major, is_state=False) * per_value.get(info.dtype, other)
    if return_state:
        for info in sig.states:
            total += _values(info, batch, timesteps, time_major, is_state=True) * per_value.get(info.dtype, other)
    return total


def _values(info: TensorInfo, batch: int, timesteps: int, time_major: bool, *, is_state: bool) -> int:
    """How many values a tensor holds: its free axes are the batch and (for sequence outputs) the time axis."""
    shape = info.shape
    count = 1
    for axis, dim in enumerate(shape):
        if dim is not None:
            count *= dim
        elif is_state or len(shape) < 3 or axis > 1:
            count *= batch if axis == 0 else 1
        else:
            count *= timesteps if (axis == 0) == time_major else batch
    return count


class LargeCalls(DirectExecutor):
    """Calls of more than `threshold` rows x timesteps, on `threads` threads of their own (see the module)."""

    def __init__(self, threshold: int, threads: int) -> None:
        super().__init__(max(1, threads), name="rnnserve-large")
        self.threshold = threshold

    def takes(self, work: int) -> bool:
        return work > self.threshold
