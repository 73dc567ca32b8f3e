"""Task-conditioned hypernetwork Q-function (von Oswald et al. 2020, "Continual learning with hypernetworks").

The Q-network (the family's DQN CNN, ``agents.networks.ConvQNetwork``, optionally narrower) owns no weights. A chunked hypernetwork ``f_h`` generates all of
them from a learned per-game embedding ``e_t``:

    theta_t = f_h(e_t) = concat_k MLP([e_t, c_k]) * s        (the paper's chunked hypernetwork, Sec. 3)

``c_k`` is a learned chunk embedding, one per ``chunk_size`` consecutive weights; all chunks of all requested
games go through the MLP in one batched call. ``s`` is a fixed per-layer scale ``1 / sqrt(fan_in)`` (LeCun), so
that the MLP's unit-variance outputs give each generated layer a sensible initial scale. With a chunk size much
larger than the MLP's last hidden layer, the hypernetwork has fewer parameters than the Q-network it generates
(compression ratio below 1).

Only the current game's embedding trains; earlier ones are frozen (``requires_grad`` off) and protected by the
method's output regularizer (``crl.methods.hypernet``). Generated weights are cached, under ``no_grad``, per
game until the network's explicit ``parameter_version`` advances (the agent advances it after every optimizer step
and load), so acting, evaluation and the DQN target network run no hypernetwork per step.
"""

from __future__ import annotations

import math
from typing import Any, Iterator, Sequence

import torch as th
from gymnasium import spaces
from torch import nn
from torch.func import functional_call

from agents.networks.base import ConvQNetwork, TaskQNetwork, register_network


def hypernet_mlp(in_dim: int, hidden: Sequence[int], out_dim: int) -> nn.Sequential:
    """ReLU MLP with He-initialized hidden layers and a unit-variance output layer (all biases 0).

    With unit-variance inputs, every hidden layer keeps the second moment at about 1 and the output layer gives
    outputs of variance about 1; the chunk bias starts at 0 so no pattern repeats across chunks at the start.
    """
    layers: list[nn.Module] = []
    width = in_dim
    for units in hidden:
        linear = nn.Linear(width, units)
        nn.init.kaiming_normal_(linear.weight, nonlinearity="relu")
        nn.init.zeros_(linear.bias)
        layers += [linear, nn.ReLU()]
        width = units
    out = nn.Linear(width, out_dim)
    nn.init.normal_(out.weight, std=1.0 / math.sqrt(width))
    nn.init.zeros_(out.bias)
    return nn.Sequential(*layers, out)


@register_network("hypernet")
class HyperQNetwork(TaskQNetwork):
    """DQN CNN Q-network whose weights a chunked hypernetwork generates from a per-game embedding.

    :param embedding_dim: size of each game's embedding ``e_t``
    :param chunk_embedding_dim: size of each chunk embedding ``c_k``
    :param hyper_hidden: hidden layer sizes of the hypernetwork MLP
    :param chunk_size: weights generated per MLP call (the MLP's output size)
    :param conv_channels: the generated Q-network's convolution widths (None: the torso's, e.g. Nature 32, 64, 64)
    :param hidden: the generated Q-network's dense units (None: the torso's, e.g. Nature 512)
    """

    def __init__(
        self,
        observation_space: spaces.Box,
        action_space: spaces.Discrete,
        embedding_dim: int = 32,
        chunk_embedding_dim: int = 32,
        hyper_hidden: Sequence[int] = (100,),
        chunk_size: int = 8000,
        conv_channels: Sequence[int] | None = None,
        hidden: int | None = None,
    ) -> None:
        super().__init__(observation_space, action_space)
        self.embedding_dim, self.chunk_embedding_dim = embedding_dim, chunk_embedding_dim
        self.hyper_hidden, self.chunk_size = tuple(hyper_hidden), chunk_size
        with th.device("meta"):  # shapes and forward pass only: meta tensors take no memory
            architecture = ConvQNetwork(observation_space, action_space, conv_channels, hidden)
        self.conv_channels, self.hidden = architecture.conv_channels, architecture.hidden
        # kept out of the module tree: its meta parameters must not reach state_dict(), parameters() or .to()
        self.__dict__["architecture"] = architecture
        params = dict(architecture.named_parameters())
        self.weight_shapes = {name: p.shape for name, p in params.items()}
        self.num_weights = sum(p.numel() for p in params.values())
        self.num_chunks = math.ceil(self.num_weights / chunk_size)
        # a layer's weight and bias both get 1 / sqrt(fan-in of that layer's weight)
        fan_in = {name: params[name.rsplit(".", 1)[0] + ".weight"][0].numel() for name in params}
        scale = [th.full((p.numel(),), fan_in[name] ** -0.5) for name, p in params.items()]
        self.register_buffer("weight_scale", th.cat(scale), persistent=False)

        self.hypernet = hypernet_mlp(embedding_dim + chunk_embedding_dim, self.hyper_hidden, chunk_size)
        self.chunk_embeddings = nn.Parameter(th.randn(self.num_chunks, chunk_embedding_dim))
        self.task_embeddings = nn.ParameterList()
        self._cache_version: int | None = None  # parameter_version the cached weights were generated at
        self._cache: dict[int, dict[str, th.Tensor]] = {}

    # --- task handling -------------------------------------------------------------------------------
    def _add_task(self, task_id: int) -> None:
        self.task_embeddings.append(nn.Parameter(th.randn(self.embedding_dim, device=self.chunk_embeddings.device)))

    def set_task(self, task_id: int) -> None:
        """Select ``task_id``; only its embedding (and the shared hypernetwork) trains from now on."""
        super().set_task(task_id)
        for i, embedding in enumerate(self.task_embeddings):
            embedding.requires_grad_(i == task_id)

    def shared_named_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        return ((n, p) for n, p in self.named_parameters() if not n.startswith("task_embeddings."))

    def compression_ratio(self) -> float:
        """(hypernetwork + chunk embeddings + game embeddings parameters) / generated Q-network parameters."""
        return sum(p.numel() for p in self.parameters()) / self.num_weights

    # --- weight generation ---------------------------------------------------------------------------
    def generate(self, task_ids: Sequence[int]) -> th.Tensor:
        """Flat generated weights ``theta_j = f_h(e_j)``, shape ``(len(task_ids), num_weights)``, in one MLP call."""
        embeddings = th.stack([self.task_embeddings[j] for j in task_ids])
        inputs = th.cat(
            [
                embeddings[:, None, :].expand(-1, self.num_chunks, -1),
                self.chunk_embeddings[None].expand(len(task_ids), -1, -1),
            ],
            dim=-1,
        )
        chunks = self.hypernet(inputs)  # (tasks, chunks, chunk_size)
        return chunks.flatten(1)[:, : self.num_weights] * self.weight_scale

    def unflatten(self, flat: th.Tensor) -> dict[str, th.Tensor]:
        """Split one flat weight vector into the Q-network's named tensors (a ``ConvQNetwork`` state dict)."""
        pieces = flat.split([shape.numel() for shape in self.weight_shapes.values()])
        return {name: w.view(shape) for (name, shape), w in zip(self.weight_shapes.items(), pieces)}

    def weights(self, task_id: int) -> dict[str, th.Tensor]:
        """The Q-network's weights for ``task_id``: differentiable under grad, else cached until the parameters change.

        The cache is keyed on :attr:`parameter_version`, which whoever writes the parameters advances (the agent after
        every optimizer step; loads, :meth:`update_target` and growth by themselves; a move to another device drops
        the cache), so a stale entry is never returned.
        """
        if th.is_grad_enabled():
            return self.unflatten(self.generate([task_id])[0])
        if self._cache_version != self.parameter_version:
            self._cache_version, self._cache = self.parameter_version, {}
        if task_id not in self._cache:
            self._cache[task_id] = self.unflatten(self.generate([task_id])[0])
        return self._cache[task_id]

    def q_values(self, x: th.Tensor, task_id: int) -> th.Tensor:
        return functional_call(self.architecture, self.weights(task_id), (x,))

    # --- DQN target ----------------------------------------------------------------------------------
    def update_target(self, target: TaskQNetwork, tau: float) -> None:
        """``target <- tau * self + (1 - tau) * target`` over hypernetwork and embeddings (tau = 1: a copy).

        In-place under ``no_grad``; the target's ``parameter_version`` advances, so its cached weights expire: its next
        forward generates the current game's weights once and reuses that snapshot until the next update (no
        hypernetwork call per step).
        """
        target.grow_to(self.num_tasks)
        target.task_id = self.task_id
        with th.no_grad():
            for param, target_param in zip(self.parameters(), target.parameters()):
                if tau == 1.0:
                    target_param.copy_(param)
                else:
                    target_param.lerp_(param, tau)
        target.parameters_changed()

    def _apply(self, fn: Any, recurse: bool = True) -> "HyperQNetwork":
        """``.to(device)`` and friends replace the parameters: cached weights are dropped with them."""
        self._cache, self._cache_version = {}, None
        return super()._apply(fn, recurse)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return dict(
            super()._get_constructor_parameters(),
            embedding_dim=self.embedding_dim,
            chunk_embedding_dim=self.chunk_embedding_dim,
            hyper_hidden=list(self.hyper_hidden),
            chunk_size=self.chunk_size,
            conv_channels=None if self.conv_channels is None else list(self.conv_channels),
            hidden=self.hidden,
        )
