"""Which training step t each sample of a batch is noised to."""

from __future__ import annotations

import torch

TIMESTEP_SAMPLERS = ("uniform", "second-moment")


class UniformTimestepSampler:
    def __init__(self, num_timesteps: int) -> None:
        self.num_timesteps = num_timesteps

    def sample(self, batch: int, generator: torch.Generator | None = None):
        t = torch.randint(0, self.num_timesteps, (batch,), generator=generator)
        return t, torch.ones(batch)

    def update(self, t: torch.Tensor, losses: torch.Tensor) -> None:
        return None

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        return None


class SecondMomentTimestepSampler:
    """Importance sampling of t with p_t proportional to sqrt(E[L_t^2]) (Nichol & Dhariwal).

    Uniform until every t has ``history`` recorded losses; then mixes in ``uniform_prob`` of
    the uniform law so that no step is starved. Weights 1 / (T p_t) keep the loss unbiased.
    """

    def __init__(self, num_timesteps: int, history: int = 10, uniform_prob: float = 0.001) -> None:
        self.num_timesteps = num_timesteps
        self.history = history
        self.uniform_prob = uniform_prob
        self.losses = torch.zeros(num_timesteps, history, dtype=torch.float64)
        self.counts = torch.zeros(num_timesteps, dtype=torch.long)

    def probabilities(self) -> torch.Tensor:
        if not bool((self.counts >= self.history).all()):
            return torch.full((self.num_timesteps,), 1.0 / self.num_timesteps, dtype=torch.float64)
        w = torch.sqrt((self.losses**2).mean(dim=1))
        w = w / w.sum()
        return w * (1.0 - self.uniform_prob) + self.uniform_prob / self.num_timesteps

    def sample(self, batch: int, generator: torch.Generator | None = None):
        p = self.probabilities()
        t = torch.multinomial(p, batch, replacement=True, generator=generator)
        weights = (1.0 / (self.num_timesteps * p[t])).to(torch.float32)
        return t, weights

    def update(self, t: torch.Tensor, losses: torch.Tensor) -> None:
        for ti, li in zip(t.tolist(), losses.detach().double().cpu().tolist()):
            if self.counts[ti] >= self.history:
                self.losses[ti] = torch.roll(self.losses[ti], -1)
                self.losses[ti, -1] = li
            else:
                self.losses[ti, self.counts[ti]] = li
            self.counts[ti] += 1

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"losses": self.losses.clone(), "counts": self.counts.clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if not state:
            return
        self.losses = state["losses"].to(torch.float64).clone()
        self.counts = state["counts"].to(torch.long).clone()


def make_timestep_sampler(name: str, num_timesteps: int):
    if name == "uniform":
        return UniformTimestepSampler(num_timesteps)
    if name == "second-moment":
        return SecondMomentTimestepSampler(num_timesteps)
    raise ValueError(f"unknown timestep sampler {name!r}; choose one of {', '.join(TIMESTEP_SAMPLERS)}")
