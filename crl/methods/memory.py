"""Bounded memories of earlier tasks' experience, shared by the rehearsal methods (``replay``, ``distill``).

* :class:`Reservoir`: a uniform random sample of at most ``capacity`` items of a stream, kept as named tensors
  (Vitter 1985, "Random sampling with a reservoir", Algorithm R), fed one vector-env step at a time.
* :func:`sample_by_task`: a minibatch drawn uniformly over the items of several tasks' memories, grouped by task, so
  each group can be evaluated with its own task id.
* :class:`Rehearsal`: the base of both methods: one reservoir per block, kept per task at the block's end (with the
  network's Q-values on it when the method needs a teacher), minibatches of every other task's, saved and restored;
  :class:`MemoryParams` are the parameters both have.

All randomness comes from a ``numpy.random.Generator`` the caller owns (and saves), never from the global RNGs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import numpy as np
import torch as th

from agents.networks import TaskQNetwork
from agents.method import HookContext, Method, MethodParams, TaskInfo, param

TEACHER_CHUNK = 256  # observations per forward pass when the teacher's Q-values are computed


def to_device(value: np.ndarray | th.Tensor, device: th.device) -> th.Tensor:
    """Host data onto ``device``; onto a GPU through pinned memory, so the copy does not wait for queued GPU work
    (these copies happen every env step and every gradient step)."""
    tensor = th.as_tensor(value)
    if device.type == "cuda" and tensor.device.type == "cpu":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


class Reservoir:
    """At most ``capacity`` items of a stream, each of the ``seen`` items so far kept with probability
    ``min(1, capacity / seen)`` (Algorithm R: item ``n`` (0-based) takes slot ``n`` while there is room, else a
    uniform ``j`` in ``[0, n]`` and replaces slot ``j`` if ``j < capacity``).

    An item is a row of each named field (``obs``, ``action``, ...); fields are allocated on first write and grow
    (doubling) up to ``capacity`` rows, on ``device``.
    """

    def __init__(self, capacity: int, device: th.device | str = "cpu") -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.seen = 0
        self.device = th.device(device)
        self.fields: dict[str, th.Tensor] = {}

    def __len__(self) -> int:
        return min(self.seen, self.capacity)

    # --- writing ---------------------------------------------------------------------------------------------
    def select(self, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Account for the next ``count`` items of the stream; return which of them to keep and their slots.

        Within one batch, when two items draw the same slot the later one wins, as if they had arrived one by one.
        """
        index = self.seen + np.arange(count)
        slots = np.where(index < self.capacity, index, rng.integers(0, index + 1))
        self.seen += count
        items = np.flatnonzero(slots < self.capacity)
        slots = slots[items]
        _, last_from_end = np.unique(slots[::-1], return_index=True)
        keep = np.sort(len(slots) - 1 - last_from_end)
        return items[keep], slots[keep]

    def write(self, slots: np.ndarray, values: Mapping[str, np.ndarray | th.Tensor]) -> None:
        """Store row ``i`` of every field of ``values`` in slot ``slots[i]``."""
        if len(slots) == 0:
            return
        self._reserve(int(slots.max()) + 1, values)
        index = to_device(slots, self.device)
        for name, value in values.items():
            self.fields[name].index_copy_(0, index, to_device(value, self.device))

    def _reserve(self, rows: int, values: Mapping[str, np.ndarray | th.Tensor]) -> None:
        for name, value in values.items():
            value = th.as_tensor(value)
            field = self.fields.get(name)
            if field is None:
                field = th.empty((0, *value.shape[1:]), dtype=value.dtype, device=self.device)
            if len(field) < rows:
                grown = th.empty((min(self.capacity, max(rows, 2 * len(field))), *field.shape[1:]),
                                 dtype=field.dtype, device=self.device)
                grown[: len(field)] = field
                field = grown
            self.fields[name] = field

    def set_field(self, name: str, value: th.Tensor) -> None:
        """Replace or add a whole field (one row per stored item), e.g. a field rebuilt in another layout."""
        self.fields[name] = value.to(self.device)

    # --- reading ---------------------------------------------------------------------------------------------
    def gather(self, slots: np.ndarray) -> dict[str, th.Tensor]:
        """Rows ``slots`` of every field."""
        index = to_device(slots, self.device)
        return {name: field.index_select(0, index) for name, field in self.fields.items()}

    def trimmed(self) -> "Reservoir":
        """This sample with storage cut to the items held (what a finished block keeps)."""
        out = Reservoir(self.capacity, self.device)
        out.seen = self.seen
        out.fields = {name: field[: len(self)].clone() for name, field in self.fields.items()}
        return out

    @property
    def bytes_per_item(self) -> int:
        """Bytes one stored item takes over all fields."""
        return sum(field[0].numel() * field.element_size() for field in self.fields.values()) if self.fields else 0

    @property
    def nbytes(self) -> int:
        """Bytes held by the stored items (allocated spare rows not counted)."""
        return len(self) * self.bytes_per_item

    # --- persistence -----------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        # clones: torch.save would write a view's whole storage, spare rows included
        return {"capacity": self.capacity, "seen": self.seen,
                "fields": {name: field[: len(self)].clone() for name, field in self.fields.items()}}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any], device: th.device | str = "cpu") -> "Reservoir":
        out = cls(int(state["capacity"]), device)
        out.seen = int(state["seen"])
        out.fields = {name: field.to(out.device) for name, field in state["fields"].items()}
        return out

    def to(self, device: th.device | str) -> "Reservoir":
        self.device = th.device(device)
        self.fields = {name: field.to(self.device) for name, field in self.fields.items()}
        return self


def sample_by_task(rng: np.random.Generator, sizes: Mapping[int, int], batch_size: int) -> list[tuple[int, np.ndarray]]:
    """``batch_size`` items drawn uniformly (with replacement) over all items of the tasks' memories.

    ``sizes`` maps task id -> items held. Returns ``(task_id, slots)`` for each task drawn at least once, in task
    order; a task's expected share of the batch is its share of the stored items.
    """
    tasks = sorted(t for t, n in sizes.items() if n > 0)
    if not tasks:
        return []
    counts = np.array([sizes[t] for t in tasks])
    ends = np.cumsum(counts)
    flat = rng.integers(0, ends[-1], size=batch_size)
    group = np.searchsorted(ends, flat, side="right")
    out = []
    for i, task in enumerate(tasks):
        chosen = flat[group == i]
        if len(chosen):
            out.append((task, chosen - (ends[i] - counts[i])))
    return out


@th.no_grad()
def teacher_q_values(q_net: TaskQNetwork, observations: th.Tensor, task_id: int, device: th.device) -> th.Tensor:
    """``q_net``'s Q-values on ``observations`` as task ``task_id`` (float32, on the observations' device), computed on
    ``device`` in chunks."""
    chunks = [q_net(observations[i : i + TEACHER_CHUNK].to(device), task_id=task_id).float()
              for i in range(0, len(observations), TEACHER_CHUNK)]
    return th.cat(chunks).to(observations.device)


@dataclass
class MemoryParams(MethodParams):
    """What every rehearsal method stores and how much of it each gradient step uses."""

    per_task: int = param(5_000, "items stored per game (a uniform sample of its latest block)", low=1)
    batch_size: int = param(32, "stored items per gradient step (a minibatch of its own, see docs/replay.md)", low=1)
    weight: float = param(1.0, "weight of the term on the stored items", low=0)


class Rehearsal(Method):
    """Base of the methods that rehearse stored samples of earlier tasks (``replay``, ``distill``).

    While a task trains, ``block`` (a :class:`Reservoir`) keeps a uniform sample of its block; at the block's end it
    becomes the task's memory (a revisited task's sample is replaced), with the network's Q-values on it (``"q"``)
    when :attr:`stores_teacher` says so. :meth:`draw` gives a minibatch of every stored task but the one training (its
    own data protects it). Subclasses write ``block`` in ``on_transition`` and turn draws into a penalty.
    """

    params: MemoryParams
    rng_stream: ClassVar[int]  # separates the subclass's random stream from others seeded by (seed, block)

    def __init__(self, params: MethodParams | dict[str, Any] | None = None) -> None:
        super().__init__(params)
        self.memories: dict[int, Reservoir] = {}
        self.block: Reservoir | None = None  # the sample of the block being trained
        self.active_task: int | None = None
        self.rng: np.random.Generator | None = None
        self.device = th.device("cpu")

    @property
    def stores_teacher(self) -> bool:
        """Whether a finished block's memory keeps the network's Q-values on its observations."""
        return True

    def before_task(self, ctx: HookContext, task: TaskInfo) -> None:
        self.active_task = task.task_id
        self.rng = np.random.default_rng([task.seed, task.block, self.rng_stream])
        self.block = Reservoir(self.params.per_task, self.device)

    def after_task(self, ctx: HookContext, task: TaskInfo) -> None:
        if self.block is None or len(self.block) == 0:
            return
        memory = self.block.trimmed()
        if self.stores_teacher:
            memory.set_field("q", teacher_q_values(ctx.q_net, memory.fields["obs"], task.task_id, ctx.device))
        self.memories[task.task_id] = memory
        self.block = None

    def draw(self) -> list[tuple[int, np.ndarray]]:
        """A minibatch of ``batch_size`` stored items of every task but the active one, as ``(task_id, slots)``
        groups (:func:`sample_by_task`); empty when nothing else is stored."""
        sizes = {t: len(m) for t, m in self.memories.items() if t != self.active_task}
        return sample_by_task(self.rng, sizes, self.params.batch_size) if sizes else []

    def memory_scalars(self, prefix: str, items: str) -> dict[str, float]:
        """``<prefix>/memory_bytes``, ``<prefix>/stored_<items>s`` and ``<prefix>/bytes_per_<items>``."""
        out = {
            f"{prefix}/memory_bytes": float(sum(m.nbytes for m in self.memories.values())),
            f"{prefix}/stored_{items}s": float(sum(len(m) for m in self.memories.values())),
        }
        if self.memories:
            out[f"{prefix}/bytes_per_{items}"] = float(next(iter(self.memories.values())).bytes_per_item)
        return out

    # --- persistence ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "memories": {t: m.state_dict() for t, m in self.memories.items()},
            "block": None if self.block is None else self.block.state_dict(),
            "active_task": self.active_task,
            "rng": None if self.rng is None else self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.memories = {int(t): Reservoir.from_state_dict(m, self.device) for t, m in state["memories"].items()}
        self.block = None if state["block"] is None else Reservoir.from_state_dict(state["block"], self.device)
        self.active_task = state["active_task"]
        self.rng = None
        if state["rng"] is not None:
            self.rng = np.random.default_rng()
            self.rng.bit_generator.state = state["rng"]

    def to(self, device: th.device) -> "Rehearsal":
        self.device = th.device(device)
        for memory in [*self.memories.values(), *([self.block] if self.block is not None else [])]:
            memory.to(self.device)
        return self
