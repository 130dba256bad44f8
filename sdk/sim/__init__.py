"""accord.sim: a deterministic simulator that drives the real Gosig core (see :mod:`.engine`)."""

from accord.sim.byzantine import STRATEGIES
from accord.sim.engine import SimConfig, SimResult, Simulator, simulate

__all__ = ["STRATEGIES", "SimConfig", "SimResult", "Simulator", "simulate"]
