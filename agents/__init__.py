"""DQN agents and task-conditioned Q-networks."""

from agents.dqn import ContinualDQN, ContinualQPolicy
from agents.networks import NETWORKS, ConvQNetwork, TaskQNetwork, build_q_network, register_network

__all__ = ["NETWORKS", "ContinualDQN", "ContinualQPolicy", "ConvQNetwork", "TaskQNetwork", "build_q_network", "register_network"]

# Network kinds register themselves with @register_network on import; one line per module below.
from agents import progressive  # noqa: F401
from agents import hypernet  # noqa: F401
