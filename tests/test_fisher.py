"""Known-answer checks of the per-sample diagonal Fisher (crl/methods/fisher.py)."""

from __future__ import annotations



import pytest
import torch as th
from gymnasium import spaces
from torch import nn

from agents.networks import ConvQNetwork
from crl.methods.fisher import diagonal_fisher, per_sample_log_likelihood_grads




def tiny_nature(task_modulation: bool = True) -> ConvQNetwork:
    """A Nature-CNN-shaped network small enough to loop over samples (36x36 frames, 4 channels per conv)."""
    th.manual_seed(0)
    net = ConvQNetwork(
        spaces.Box(0, 255, (4, 36, 36), dtype="uint8"), spaces.Discrete(5), conv_channels=(4, 4, 4), hidden=8,
        task_modulation=task_modulation,
    )
    net.set_task(1)  # two tasks, the second active, its gains away from 1 so modulation matters
    with th.no_grad():
        for m in net.modulations:
            m.gains[1].uniform_(0.5, 1.5)
            m.biases[1].uniform_(-0.1, 0.1)
    return net


def looped_fisher(
    model: nn.Module, names: list[str], obs: th.Tensor, actions: th.Tensor, temperature: float
) -> dict[str, th.Tensor]:
    """The slow reference: one backward pass per sample, squared gradients averaged."""
    params = dict(model.named_parameters())
    total = {n: th.zeros_like(params[n]) for n in names}
    for x, a in zip(obs, actions):
        model.zero_grad()
        th.log_softmax(model(x.unsqueeze(0))[0] / temperature, dim=-1)[a].backward()
        for n in names:
            total[n] += params[n].grad.square()
    return {n: t / len(obs) for n, t in total.items()}


def random_frames(n: int) -> th.Tensor:
    return th.randint(0, 256, (n, 4, 36, 36), dtype=th.uint8, generator=th.Generator().manual_seed(1))


def test_empirical_fisher_equals_per_sample_loop_on_cnn() -> None:
    net = tiny_nature()
    names = [n for n, _ in net.shared_named_parameters()]
    obs, actions = random_frames(12), th.arange(12) % 5
    batches = [(obs[:7], actions[:7]), (obs[7:], actions[7:])]
    fisher = diagonal_fisher(net, names, batches, temperature=0.5, fisher_type="empirical")
    expected = looped_fisher(net, names, obs, actions, temperature=0.5)
    assert set(fisher) == set(names) and not any(n.startswith("modulations.") for n in fisher)
    for n in names:
        th.testing.assert_close(fisher[n], expected[n], rtol=1e-4, atol=1e-9)
    assert all(fisher[n].abs().sum() > 0 for n in names)


def test_true_fisher_equals_loop_with_the_same_sampled_actions() -> None:
    net = tiny_nature()
    names = [n for n, _ in net.shared_named_parameters()]
    obs = random_frames(10)
    fisher = diagonal_fisher(net, names, [(obs, th.zeros(10))], generator=th.Generator().manual_seed(3))
    with th.no_grad():
        probs = th.softmax(net(obs), dim=-1)
    sampled = th.multinomial(probs, 1, generator=th.Generator().manual_seed(3)).squeeze(1)
    expected = looped_fisher(net, names, obs, sampled, temperature=1.0)
    for n in names:
        th.testing.assert_close(fisher[n], expected[n], rtol=1e-4, atol=1e-9)


def test_per_sample_grads_differ_from_the_batch_mean_gradient() -> None:
    net = tiny_nature(task_modulation=False)
    names = ["fc.weight"]
    obs, actions = random_frames(8), th.arange(8) % 5
    grads = per_sample_log_likelihood_grads(net, names, obs, actions)["fc.weight"]
    assert grads.shape == (8, *net.fc.weight.shape)
    squared_mean = grads.mean(0).square()
    assert (grads.square().mean(0).sum() > 2 * squared_mean.sum()).item()


def linear_softmax(weight: th.Tensor) -> nn.Module:
    model = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    with th.no_grad():
        model.weight.copy_(weight)
    return model


def test_linear_softmax_fisher_has_the_closed_form() -> None:
    """logits = W x: d log p_a / d W_ij = (1[a=i] - p_i) x_j, so E_a~p[.^2] = p_i (1 - p_i) x_j^2."""
    weight = th.tensor([[0.5, -1.0, 0.2], [0.0, 0.3, -0.4], [-0.7, 0.1, 0.9]])
    model = linear_softmax(weight)
    x = th.tensor([1.0, 2.0, -0.5])
    p = th.softmax(weight @ x, dim=0)

    empirical = diagonal_fisher(model, ["weight"], [(x.unsqueeze(0), th.tensor([2]))], fisher_type="empirical")
    th.testing.assert_close(empirical["weight"], ((th.eye(3)[2] - p).square()[:, None] * x.square()[None, :]))

    n = 20_000
    samples = [(x.expand(n, 3), th.zeros(n))]
    true = diagonal_fisher(model, ["weight"], samples, fisher_type="true", generator=th.Generator().manual_seed(0))
    closed_form = (p * (1 - p))[:, None] * x.square()[None, :]
    th.testing.assert_close(true["weight"], closed_form, rtol=0.05, atol=0.0)


def test_temperature_scales_the_logits() -> None:
    """At temperature T the policy is softmax(Wx / T): the same Fisher as weights W / T, scaled by 1 / T^2."""
    weight = th.tensor([[0.5, -1.0], [0.3, 0.8]])
    x, a = th.tensor([[1.0, -2.0]]), th.tensor([0])
    hot = diagonal_fisher(linear_softmax(weight), ["weight"], [(x, a)], temperature=2.0, fisher_type="empirical")
    scaled = diagonal_fisher(linear_softmax(weight / 2), ["weight"], [(x, a)], fisher_type="empirical")
    th.testing.assert_close(hot["weight"], scaled["weight"] / 4)


def test_unknown_fisher_type_is_rejected() -> None:
    with pytest.raises(ValueError, match="fisher_type"):
        diagonal_fisher(linear_softmax(th.eye(2)), ["weight"], [], fisher_type="exact")  # type: ignore[arg-type]
