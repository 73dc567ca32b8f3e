"""Progressive neural network Q-function (Rusu et al. 2016, "Progressive Neural Networks").

One column per task, laid out like the family's DQN CNN (``agents.networks.torso_for``: the Nature CNN on
Atari, Young & Tian's one-convolution network on MinAtar). Column ``k`` reads, at every layer but the first, the previous layer's
activations of all earlier columns through a non-linear lateral adapter (the paper's eq. 2):

    h_i^(k) = relu( W_i^(k) h_{i-1}^(k) + U_i^(k) relu( V_i^(k) [a_{i-1}^(k:j) h_{i-1}^(j)]_{j<k} ) )

``a`` is one learned scalar per earlier column, ``[...]_{j<k}`` concatenates the scaled activations along the
channel axis and ``V`` projects them back to the width of one column (a 1x1 convolution for feature maps, a
linear map for dense units), so the adapter's input grows with ``k`` and the parameter count grows
quadratically with the number of columns. The output layer has no ReLU.

Only the current task's parameters train; everything else is frozen (``requires_grad`` off). A column trains
whole, with its adapters, while no later column reads it. Once one does (a revisit in a later cycle), only its Q
head and the head's adapter train by default: no layer reads another column's Q head, so the activations later
columns read never change and no game is forgotten.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import torch as th
from gymnasium import spaces
from stable_baselines3.common.utils import polyak_update
from torch import nn

from agents.networks.base import Torso, TaskQNetwork, conv_output_size, register_network, torso_for

# Named column widths: "dqn" is the torso's own network; "paper" the paper's Atari columns (12 maps per conv, 256 units).
WIDTHS = ("dqn", "paper")
PAPER_ATARI_COLUMN = (12, 12, 12, 256)
# What a revisit trains once later columns read the game's column: its Q head (and the head's adapter), or all of it.
REVISITS = ("head", "column")


def resolve_width(width: str | Sequence[int], torso: Torso) -> tuple[int, ...]:
    """Column sizes ``(conv channels..., hidden)`` for ``torso``: a name from :data:`WIDTHS` or explicit sizes."""
    if isinstance(width, str):
        if width == "dqn":
            return (*(c for c, _, _ in torso.conv), torso.hidden)
        if width == "paper":
            if torso.name != "nature":
                raise ValueError("progressive.width=paper is the paper's Atari column; use dqn on this game family")
            return PAPER_ATARI_COLUMN
        raise ValueError(f"unknown progressive width {width!r}; known: {', '.join(WIDTHS)}")
    sizes = tuple(int(n) for n in width)
    if len(sizes) != len(torso.conv) + 1 or min(sizes) < 1:
        raise ValueError(
            f"progressive width must be a name or {len(torso.conv) + 1} positive sizes [conv channels..., hidden] "
            f"for the {torso.name} torso, got {width!r}"
        )
    return sizes


class Lateral(nn.Module):
    """Adapter into one layer of column ``k`` from its ``k`` earlier columns: ``U relu(V [a_j h_j]_{j<k})``.

    ``V`` maps the concatenated, scaled activations (``k`` times one column's width) back to one column's width;
    ``U`` has the shape of the layer's own weight ``W`` (no bias: ``W`` has one). ``flatten`` sits between them
    where the layer is dense but its input is a feature map.
    """

    def __init__(self, sources: int, V: nn.Module, U: nn.Module, alpha_init: float, flatten: bool = False) -> None:
        super().__init__()
        self.alpha = nn.Parameter(th.full((sources,), float(alpha_init)))
        self.V = V
        self.U = U
        self.flatten = flatten

    def forward(self, earlier: list[th.Tensor]) -> th.Tensor:
        scaled = th.cat([a * h for a, h in zip(self.alpha, earlier)], dim=1)
        reduced = th.relu(self.V(scaled))
        return self.U(reduced.flatten(1) if self.flatten else reduced)


@register_network("progressive")
class ProgressiveQNetwork(TaskQNetwork):
    """A column per task (the family's DQN CNN layout), earlier columns frozen, lateral adapters between them.

    ``width``: ``"dqn"`` (the torso's own widths: 32-64-64 channels and 512 units on Atari, 16 channels and 128
    units on MinAtar), ``"paper"`` (12 maps per conv layer, 256 units, the paper's Atari columns) or explicit
    ``[conv channels..., hidden]``. ``adapters=False`` gives independent columns
    (the ablation without transfer). ``alpha_init`` starts every adapter scalar (the paper tried 1, 0.1, 0.01).
    ``revisit`` (one of :data:`REVISITS`): what a task trains when later columns read its column, see
    :meth:`trainable_modules`. The network always holds at least one column.
    """

    def __init__(
        self,
        observation_space: spaces.Box,
        action_space: spaces.Discrete,
        width: str | Sequence[int] = "dqn",
        adapters: bool = True,
        alpha_init: float = 0.1,
        revisit: str = "head",
    ) -> None:
        super().__init__(observation_space, action_space)
        if revisit not in REVISITS:
            raise ValueError(f"unknown progressive revisit {revisit!r}; known: {', '.join(REVISITS)}")
        self.width = width if isinstance(width, str) else list(width)
        self.adapters = adapters
        self.alpha_init = float(alpha_init)
        self.revisit = revisit
        torso = torso_for(observation_space)
        *channels, self.hidden = resolve_width(width, torso)
        self.conv_layers = torso.layers(channels)
        self.in_channels = observation_space.shape[0]
        self.side = conv_output_size(observation_space.shape[1], self.conv_layers)
        self.n_actions = int(action_space.n)
        self.columns = nn.ModuleList()
        self.laterals = nn.ModuleList()
        self.grow_to(1)

    # --- structure -----------------------------------------------------------------------------------
    def _column(self) -> nn.ModuleList:
        """Layers of one column: the convolutions, the dense hidden layer (on flattened maps), the Q head."""
        layers, in_channels = nn.ModuleList(), self.in_channels
        for out_channels, kernel, stride in self.conv_layers:
            layers.append(nn.Conv2d(in_channels, out_channels, kernel, stride))
            in_channels = out_channels
        layers.append(nn.Sequential(nn.Flatten(), nn.Linear(in_channels * self.side**2, self.hidden)))
        layers.append(nn.Linear(self.hidden, self.n_actions))
        return layers

    def _adapters(self, sources: int) -> nn.ModuleList:
        """Adapters into every layer but the first (later convs, dense, Q head) of a column with ``sources``
        earlier columns; each reads the previous layer's output of all earlier columns."""
        n, a = sources, self.alpha_init
        adapters = nn.ModuleList()
        for (c_in, _, _), (c_out, kernel, stride) in zip(self.conv_layers, self.conv_layers[1:]):
            adapters.append(Lateral(n, nn.Conv2d(n * c_in, c_in, 1), nn.Conv2d(c_in, c_out, kernel, stride, bias=False), a))
        c_last = self.conv_layers[-1][0]
        dense_in = nn.Linear(c_last * self.side**2, self.hidden, bias=False)
        adapters.append(Lateral(n, nn.Conv2d(n * c_last, c_last, 1), dense_in, a, flatten=True))
        head_in = nn.Linear(self.hidden, self.n_actions, bias=False)
        adapters.append(Lateral(n, nn.Linear(n * self.hidden, self.hidden), head_in, a))
        return adapters

    def _add_task(self, task_id: int) -> None:
        device = self.device
        self.columns.append(self._column().to(device))
        self.laterals.append(self._adapters(task_id).to(device) if self.adapters and task_id > 0 else nn.ModuleList())
        self._freeze_all_but(self.task_id)

    def trainable_modules(self, task_id: int) -> list[nn.Module]:
        """What trains while ``task_id`` trains: its column and adapters, while no later column reads them.

        Later columns' adapters read every layer's output of column ``task_id`` except its Q head's. So once a later
        column exists (and adapters are on), ``revisit="head"`` trains only the Q head and the head's adapter (which
        reads earlier columns and feeds this head alone): every other task's Q-values stay exactly as they were.
        ``revisit="column"`` trains the whole column again, and the later columns' Q-values drift with it.
        """
        column, lateral = self.columns[task_id], self.laterals[task_id]
        read_by_later = self.adapters and task_id < len(self.columns) - 1
        if read_by_later and self.revisit == "head":
            return [column[-1], *lateral[-1:]]
        return [column, lateral]

    def _freeze_all_but(self, task_id: int) -> None:
        self.columns.requires_grad_(False)
        self.laterals.requires_grad_(False)
        for module in self.trainable_modules(task_id):
            module.requires_grad_(True)

    def set_task(self, task_id: int) -> None:
        """Select (growing if needed) column ``task_id``; :meth:`trainable_modules` become the only trainable part."""
        super().set_task(task_id)
        self._freeze_all_but(task_id)

    def column_parameter_counts(self) -> list[int]:
        """Parameters of each column, its adapters included (column 0 has none)."""
        return [
            sum(p.numel() for p in column.parameters()) + sum(p.numel() for p in lateral.parameters())
            for column, lateral in zip(self.columns, self.laterals)
        ]

    def shared_named_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """None: every parameter belongs to one column; freezing, not a penalty, protects old tasks."""
        return iter(())

    def update_target(self, target: TaskQNetwork, tau: float) -> None:
        """Frozen parameters are copied exactly; the trainable ones (:meth:`trainable_modules`) are polyak-averaged."""
        target.grow_to(self.num_tasks)
        target.task_id = self.task_id
        pairs = list(zip(self.parameters(), target.parameters()))
        with th.no_grad():
            for param, target_param in pairs:
                if not param.requires_grad:
                    target_param.copy_(param)
        polyak_update([p for p, _ in pairs if p.requires_grad], [t for p, t in pairs if p.requires_grad], tau)
        target.parameters_changed()

    # --- forward -------------------------------------------------------------------------------------
    def q_values(self, x: th.Tensor, task_id: int) -> th.Tensor:
        active = list(range(task_id + 1)) if self.adapters else [task_id]
        h = {k: x for k in active}  # h_0: every column sees the frame stack
        last = len(self.columns[task_id]) - 1
        for i in range(last + 1):
            out = {}
            for k in active if i < last else [task_id]:  # earlier columns' Q heads feed nothing
                z = self.columns[k][i](h[k])
                if i > 0 and self.adapters and k > 0:
                    z = z + self.laterals[k][i - 1]([h[j] for j in range(k)])
                out[k] = z if i == last else th.relu(z)
            h = out
        return h[task_id]

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return dict(
            super()._get_constructor_parameters(), width=self.width, adapters=self.adapters, alpha_init=self.alpha_init,
            revisit=self.revisit,
        )
