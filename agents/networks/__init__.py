"""Task-conditioned Q-networks, built by kind from a declarative spec (``build_q_network``).

    base.py           TaskQNetwork (the interface), the registry of kinds, the DQN CNN of each family (``conv``)
    progressive_q.py  ``progressive``: one column per task, lateral adapters from the frozen earlier columns
    hyper_q.py        ``hypernet``: a chunked hypernetwork generates the Q-network's weights per task embedding
"""

from agents.networks.base import (
    NETWORKS,
    ConvQNetwork,
    TaskQNetwork,
    Torso,
    build_q_network,
    conv_output_size,
    register_network,
    torso_for,
)
from agents.networks.hyper_q import HyperQNetwork
from agents.networks.progressive_q import ProgressiveQNetwork

__all__ = ["NETWORKS", "ConvQNetwork", "HyperQNetwork", "ProgressiveQNetwork", "TaskQNetwork", "Torso",
           "build_q_network", "conv_output_size", "register_network", "torso_for"]
