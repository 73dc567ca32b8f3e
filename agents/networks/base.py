"""Task-conditioned Q-networks.

Every Q-network in the toolkit is a :class:`TaskQNetwork`: a stable-baselines3 ``BasePolicy`` (so SB3's
``DQNPolicy`` can hold it as ``q_net`` / ``q_net_target``) that maps a batch of uint8 frame stacks to Q-values
for the *current task*. The task is state of the network (``set_task``), not an argument of ``forward``, so SB3's
own calls (``q_net(obs)``, ``predict``, ``evaluate_policy``) work unchanged.

Networks may grow: progressive networks add a column per task, hypernetworks an embedding, task modulation a
bias/gain set. ``grow_to(n)`` makes room for ``n`` tasks and is idempotent; the agent calls it before a task starts
and before loading a checkpoint, so the saved state dict always matches the rebuilt structure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.utils import polyak_update
from torch import nn

ConvLayers = tuple[tuple[int, int, int], ...]  # (out_channels, kernel, stride) per unpadded convolution


@dataclass(frozen=True)
class Torso:
    """The DQN convolutional torso of a game family: its convolutions and dense width.

    ``nature``: Mnih et al. 2015 on 84x84 Atari frame stacks (conv 32 8x8/4, 64 4x4/2, 64 3x3/1, dense 512).
    ``minatar``: Young & Tian 2019 on 10x10 MinAtar grids (conv 16 3x3/1, dense 128).
    """

    name: str
    conv: ConvLayers
    hidden: int

    def layers(self, conv_channels: Sequence[int] | None = None) -> ConvLayers:
        """The convolutions with ``conv_channels`` as their widths (None: the torso's own)."""
        if conv_channels is None:
            return self.conv
        if len(conv_channels) != len(self.conv) or min(conv_channels) < 1:
            raise ValueError(
                f"the {self.name} torso has {len(self.conv)} convolution(s): conv_channels needs "
                f"{len(self.conv)} positive widths, got {list(conv_channels)}"
            )
        return tuple((int(c), k, s) for c, (_, k, s) in zip(conv_channels, self.conv))


TORSOS = {
    "nature": Torso("nature", ((32, 8, 4), (64, 4, 2), (64, 3, 1)), 512),
    "minatar": Torso("minatar", ((16, 3, 1),), 128),
}


def torso_for(observation_space: spaces.Box) -> Torso:
    """The torso that fits the observations: MinAtar's for small grids (10x10), the Nature CNN for 84x84 frames."""
    side = observation_space.shape[1]
    return TORSOS["nature"] if side >= 36 else TORSOS["minatar"]


def conv_output_size(size: int, layers: ConvLayers) -> int:
    """Spatial side length after a stack of unpadded convolutions (84 -> 20 -> 9 -> 7 for the Nature CNN)."""
    for _, kernel, stride in layers:
        size = (size - kernel) // stride + 1
    return size


def _parameters_loaded(network: "TaskQNetwork", _incompatible_keys: Any) -> None:
    network.parameters_changed()


class TaskQNetwork(BasePolicy):
    """Base class: a Q-network conditioned on the current task index.

    Subclasses implement :meth:`q_values` and, if their structure depends on the number of tasks,
    :meth:`_add_task`.
    """

    def __init__(self, observation_space: spaces.Box, action_space: spaces.Discrete) -> None:
        super().__init__(observation_space, action_space, normalize_images=False)
        self.task_id = 0
        self.num_tasks = 0
        self.parameter_version = 0  # advanced by parameters_changed(); caches of derived weights key on it
        self.register_load_state_dict_post_hook(_parameters_loaded)  # also when a parent module loads

    def parameters_changed(self) -> None:
        """Declare that parameter values changed (optimizer step, load, target update, growth).

        Whoever writes parameters calls this: the agent after every optimizer step, the network itself after a
        ``load_state_dict`` (also one of a parent module), a target update or growth. A network that caches tensors derived from its parameters (the hypernetwork's
        generated weights) keys the cache on :attr:`parameter_version`, so it never serves stale values.
        """
        self.parameter_version += 1

    # --- task handling -------------------------------------------------------------------------------
    def grow_to(self, num_tasks: int) -> bool:
        """Make room for ``num_tasks`` tasks; return True if parameters were added."""
        grew = False
        while self.num_tasks < num_tasks:
            self._add_task(self.num_tasks)
            self.num_tasks += 1
            grew = True
        if grew:
            self.parameters_changed()
        return grew

    def _add_task(self, task_id: int) -> None:
        """Create the parameters of a new task (nothing for a shared network)."""

    def set_task(self, task_id: int) -> None:
        """Select the task whose Q-values ``forward`` returns, growing the network if needed."""
        self.grow_to(task_id + 1)
        self.task_id = task_id

    # --- what the optimizer and the methods see ------------------------------------------------------
    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters the optimizer updates while the current task trains (all, unless frozen)."""
        return (p for p in self.parameters() if p.requires_grad)

    def shared_named_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """Parameters shared by all tasks: the ones a regularizer such as EWC protects."""
        return self.named_parameters()

    def update_target(self, target: "TaskQNetwork", tau: float) -> None:
        """DQN target update: ``target <- tau * self + (1 - tau) * target`` (tau = 1 is a hard copy)."""
        target.grow_to(self.num_tasks)
        target.task_id = self.task_id
        polyak_update(self.parameters(), target.parameters(), tau)
        target.parameters_changed()

    # --- forward -------------------------------------------------------------------------------------
    def q_values(self, x: th.Tensor, task_id: int) -> th.Tensor:
        raise NotImplementedError  # abstract: each network defines its own forward pass

    def forward(self, obs: th.Tensor, task_id: int | None = None) -> th.Tensor:
        x = obs.float() / 255.0 if obs.dtype == th.uint8 else obs.float()
        return self.q_values(x, self.task_id if task_id is None else task_id)

    def _predict(self, observation: th.Tensor, deterministic: bool = True) -> th.Tensor:
        return self(observation).argmax(dim=1).reshape(-1)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return dict(observation_space=self.observation_space, action_space=self.action_space)


class TaskModulation(nn.Module):
    """Per-task bias and gain for one layer's units: ``(W x + b_task) * g_task`` (EWC paper's Atari agent).

    ``W x`` comes in without its own bias (the layer's bias is shared); the task bias starts at 0, the gain at 1,
    so a new task starts from the shared network's function.
    """

    def __init__(self, units: int) -> None:
        super().__init__()
        self.units = units
        self.biases = nn.ParameterList()
        self.gains = nn.ParameterList()

    def add_task(self, device: th.device | None = None) -> None:
        self.biases.append(nn.Parameter(th.zeros(self.units, device=device)))
        self.gains.append(nn.Parameter(th.ones(self.units, device=device)))

    def forward(self, h: th.Tensor, task_id: int) -> th.Tensor:
        shape = (1, -1, 1, 1) if h.dim() == 4 else (1, -1)
        return (h + self.biases[task_id].view(shape)) * self.gains[task_id].view(shape)


ACTIVATIONS = ("relu", "crelu")


class ConvQNetwork(TaskQNetwork):
    """The DQN CNN of the observations' game family (:func:`torso_for`), one Q-value per action.

    On Atari the Nature CNN (Mnih et al. 2015), on MinAtar Young & Tian 2019's network. With ``task_modulation``
    every layer gets per-task biases and gains (Kirkpatrick et al. 2017, Atari agent). ``conv_channels``/``hidden``
    change the widths (None: the torso's own; the EWC paper used 32-64-128 channels and 1024 units on Atari).
    ``activation="crelu"`` concatenates ``relu(h)`` and ``relu(-h)`` (Shang et al. 2016; Abbas et al. 2023), doubling
    what each layer passes on; ``layer_norm`` normalizes every hidden layer before its activation (GroupNorm with one
    group on the convolutions: layer norm over channels and positions).

    Plasticity interventions see the hidden layers (the convolutions and the dense layer) as units:
    :meth:`activations`, :meth:`outgoing_magnitude`, :meth:`reinitialize_units`.
    """

    def __init__(
        self,
        observation_space: spaces.Box,
        action_space: spaces.Discrete,
        conv_channels: Sequence[int] | None = None,
        hidden: int | None = None,
        task_modulation: bool = False,
        activation: str = "relu",
        layer_norm: bool = False,
    ) -> None:
        super().__init__(observation_space, action_space)
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
        torso = torso_for(observation_space)
        layers = torso.layers(conv_channels)
        in_channels, side = observation_space.shape[0], observation_space.shape[1]
        self.conv_channels = None if conv_channels is None else tuple(int(c) for c in conv_channels)
        self.hidden = torso.hidden if hidden is None else int(hidden)
        self.task_modulation = task_modulation
        self.activation = activation
        self.layer_norm = layer_norm
        self.passes_on = 2 if activation == "crelu" else 1  # features per unit the next layer sees
        self.convs = nn.ModuleList()
        for out_channels, kernel, stride in layers:
            self.convs.append(nn.Conv2d(in_channels, out_channels, kernel, stride))
            in_channels = out_channels * self.passes_on
        self.conv_side = conv_output_size(side, layers)
        self.fc = nn.Linear(in_channels * self.conv_side ** 2, self.hidden)
        self.head = nn.Linear(self.hidden * self.passes_on, int(action_space.n))
        widths = [m.out_channels for m in self.convs] + [self.hidden, int(action_space.n)]
        self.modulations = nn.ModuleList([TaskModulation(w) for w in widths] if task_modulation else [])
        self.norms = nn.ModuleList(
            [nn.GroupNorm(1, m.out_channels) for m in self.convs] + [nn.LayerNorm(self.hidden)] if layer_norm else [])

    def _add_task(self, task_id: int) -> None:
        device = self.head.weight.device
        for modulation in self.modulations:
            modulation.add_task(device)

    def set_task(self, task_id: int) -> None:
        """Select ``task_id``; of the per-task biases and gains only its own train from now on."""
        super().set_task(task_id)
        for modulation in self.modulations:
            for i, (bias, gain) in enumerate(zip(modulation.biases, modulation.gains)):
                bias.requires_grad_(i == task_id)
                gain.requires_grad_(i == task_id)

    def shared_named_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        return ((n, p) for n, p in self.named_parameters() if not n.startswith("modulations."))

    def _modulate(self, i: int, h: th.Tensor, task_id: int) -> th.Tensor:
        return self.modulations[i](h, task_id) if self.task_modulation else h

    def _activate(self, h: th.Tensor) -> th.Tensor:
        return th.cat([th.relu(h), th.relu(-h)], dim=1) if self.activation == "crelu" else th.relu(h)

    def _hidden(self, x: th.Tensor, task_id: int) -> list[th.Tensor]:
        """The output of every hidden layer (after its activation), the convolutions' then the dense layer's."""
        outputs = []
        for i, layer in enumerate([*self.convs, self.fc]):
            h = layer(x if i < len(self.convs) else x.flatten(1))
            if self.layer_norm:
                h = self.norms[i](h)
            x = self._activate(self._modulate(i, h, task_id))
            outputs.append(x)
        return outputs

    def q_values(self, x: th.Tensor, task_id: int) -> th.Tensor:
        return self._modulate(len(self.convs) + 1, self.head(self._hidden(x, task_id)[-1]), task_id)

    # --- the hidden layers as units, for plasticity measures and interventions --------------------------
    def hidden_layer_names(self) -> list[str]:
        return [f"conv{i + 1}" for i in range(len(self.convs))] + ["fc"]

    def activations(self, obs: th.Tensor, task_id: int | None = None, per_unit: bool = False) -> list[th.Tensor]:
        """Each hidden layer's output on ``obs`` (as ``task_id``; None: the current task). ``per_unit``: one channel
        per unit, the magnitudes of a CReLU unit's two halves added (a CReLU unit is silent only where ``h = 0``)."""
        x = obs.float() / 255.0 if obs.dtype == th.uint8 else obs.float()
        outputs = self._hidden(x, self.task_id if task_id is None else task_id)
        if per_unit and self.passes_on == 2:
            outputs = [sum(h.abs().chunk(2, dim=1)) for h in outputs]
        return outputs

    def _units(self, layer: int) -> tuple[nn.Module, str, nn.Module, str]:
        """Hidden layer ``layer``'s module and name, and the module its units feed (and its name)."""
        chain = [*self.convs, self.fc, self.head]
        names = [f"convs.{i}" for i in range(len(self.convs))] + ["fc", "head"]
        return chain[layer], names[layer], chain[layer + 1], names[layer + 1]

    def _outgoing_columns(self, layer: int, units: th.Tensor) -> th.Tensor:
        """Which inputs of the next layer come from ``units`` (a bool per unit): both CReLU halves, and every
        position of a convolution's channel where the dense layer flattens it."""
        columns = units.repeat(self.passes_on)
        return columns.repeat_interleave(self.conv_side ** 2) if layer == len(self.convs) - 1 else columns

    def outgoing_magnitude(self, layer: int) -> th.Tensor:
        """``sum_k |w_ki|`` per unit ``i`` of hidden layer ``layer`` over every weight leaving it."""
        _, _, outgoing, _ = self._units(layer)
        w = outgoing.weight.detach().abs()
        per_input = w.sum(dim=(0, 2, 3)) if w.dim() == 4 else w.sum(dim=0)
        units = self._units(layer)[0].weight.shape[0]
        per_input = per_input.view(self.passes_on * units, -1).sum(dim=1)  # positions of a flattened channel
        return per_input.view(self.passes_on, units).sum(dim=0)

    def reinitialize_units(self, layer: int, units: th.Tensor, fresh: dict[str, th.Tensor],
                           written: dict[nn.Parameter, th.Tensor] | None = None) -> dict[nn.Parameter, th.Tensor]:
        """Give ``units`` of hidden layer ``layer`` the incoming weights of ``fresh`` (a newly initialized network's
        named parameters) and a zero bias, and zero their outgoing weights: a unit that never fired leaves the
        output unchanged. Returns the entries written as ``{parameter: bool mask}`` (for the optimizer's moments),
        merged into ``written`` (a layer's outgoing weights are the next layer's incoming ones: masks add up)."""
        incoming, name, outgoing, _ = self._units(layer)
        written = {} if written is None else written

        def write(param: nn.Parameter, mask: th.Tensor) -> None:
            written[param] = written[param] | mask if param in written else mask

        with th.no_grad():
            mask = units.view(-1, *[1] * (incoming.weight.dim() - 1)).expand_as(incoming.weight)
            incoming.weight[mask] = fresh[f"{name}.weight"].to(incoming.weight.device)[mask]
            write(incoming.weight, mask)
            incoming.bias[units] = 0.0
            write(incoming.bias, units)
            if self.layer_norm:
                norm = self.norms[layer]
                for param, value in ((norm.weight, 1.0), (norm.bias, 0.0)):
                    param[units] = value
                    write(param, units)
            columns = self._outgoing_columns(layer, units)
            mask = columns.view(1, -1, *[1] * (outgoing.weight.dim() - 2)).expand_as(outgoing.weight)
            outgoing.weight[mask] = 0.0
            write(outgoing.weight, mask)
        return written

    def last_layers_named_parameters(self, layers: int) -> list[tuple[str, nn.Parameter]]:
        """The shared parameters of the last ``layers`` layers (1: the head; 2: and the dense layer with its norm)."""
        prefixes = ["head."] + (["fc.", f"norms.{len(self.convs)}."] if layers >= 2 else [])
        return [(n, p) for n, p in self.shared_named_parameters() if n.startswith(tuple(prefixes))]

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return dict(
            super()._get_constructor_parameters(),
            conv_channels=self.conv_channels,
            hidden=self.hidden,
            task_modulation=self.task_modulation,
            activation=self.activation,
            layer_norm=self.layer_norm,
        )


NETWORKS: dict[str, Callable[..., TaskQNetwork]] = {"conv": ConvQNetwork}


def register_network(kind: str) -> Callable[[type[TaskQNetwork]], type[TaskQNetwork]]:
    """Class decorator adding a network kind to :data:`NETWORKS` (used by progressive and hypernet)."""

    def decorate(cls: type[TaskQNetwork]) -> type[TaskQNetwork]:
        NETWORKS[kind] = cls
        return cls

    return decorate


def build_q_network(observation_space: spaces.Box, action_space: spaces.Discrete, spec: dict[str, Any]) -> TaskQNetwork:
    """Build a network from a declarative spec ``{"kind": ..., **kwargs}`` (what methods return, what SB3 saves)."""
    spec = dict(spec)
    kind = spec.pop("kind", "conv")
    if kind not in NETWORKS:
        raise ValueError(f"unknown network kind {kind!r}; known: {', '.join(sorted(NETWORKS))}")
    return NETWORKS[kind](observation_space, action_space, **spec)
