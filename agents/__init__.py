"""DQN agents, task-conditioned Q-networks, and the contract a continual-learning method keeps with the agent."""

from agents.dqn import ContinualDQN, ContinualQPolicy
from agents.method import METHODS, HookContext, Method, MethodParams, TaskInfo
from agents.networks import NETWORKS, ConvQNetwork, TaskQNetwork, build_q_network, register_network

__all__ = ["METHODS", "NETWORKS", "ContinualDQN", "ContinualQPolicy", "ConvQNetwork", "HookContext", "Method",
           "MethodParams", "TaskInfo", "TaskQNetwork", "build_q_network", "register_network"]
