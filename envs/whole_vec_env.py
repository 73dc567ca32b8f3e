"""``WholeVecEnv``: the part of SB3's VecEnv interface shared by the toolkit's game families.

Both families step all their games as one object (ALE's C++ vector env, a loop over MinAtar environments), so the
calls SB3 makes on sub-environments answer for the whole vector, and episode statistics come in ``info["episode"]``
as a Monitor's would.
"""

from __future__ import annotations

from typing import Any

from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices


class WholeVecEnv(VecEnv):
    """A VecEnv without per-env objects: attributes are the vector's own, sub-environment methods do not exist."""

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        if attr_name == "render_mode":
            return [None for _ in self._get_indices(indices)]
        return [getattr(self, attr_name) for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        setattr(self, attr_name, value)

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any) -> list[Any]:
        raise AttributeError(f"{type(self).__name__} steps its games as one vector and has no per-env {method_name!r}")

    def env_is_wrapped(self, wrapper_class: type, indices: VecEnvIndices = None) -> list[bool]:
        """Monitor-like: episode statistics (raw scores) are in ``info["episode"]``, so SB3 tools trust them."""
        return [wrapper_class is Monitor for _ in self._get_indices(indices)]
