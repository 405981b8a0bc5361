"""Control plane: demand estimation and the controller that re-plans on the clock."""

from rheostat.control.controller import (
    Controller,
    ControllerConfig,
    Decision,
    SolveRunner,
    VirtualSolveRunner,
    should_replan,
)
from rheostat.control.demand import DemandEstimator

__all__ = [
    "Controller",
    "ControllerConfig",
    "Decision",
    "DemandEstimator",
    "SolveRunner",
    "VirtualSolveRunner",
    "should_replan",
]
