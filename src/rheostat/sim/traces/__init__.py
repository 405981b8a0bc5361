"""Request arrival traces for the simulator: who asks, when, and within what SLO.

A `Trace` is columnar (one numpy array per attribute, one row per request, sorted by arrival)
so that traces of 10^5-10^6 requests load, slice and count in milliseconds. Traces come from
files (`read_proteus`, `read_counts`), from seeded generators (`poisson`, `gamma_bursts`,
`diurnal`, `step`, `from_schedule`) or from a scenario file's mapping (`build_trace`, keyed
by `TraceKind`); `merge` combines them. Generators are deterministic given `seed`.

Times are seconds from the start of the trace. A trace covers [0, `duration_s`), where
`duration_s` is the smallest whole second strictly after the last arrival: the arrays hold
no separate end time, so a generated trace whose last seconds happen to be empty is
shorter than the `duration_s` it was asked for.
"""

from rheostat.sim.traces.generators import diurnal, from_schedule, gamma_bursts, poisson, step
from rheostat.sim.traces.readers import read_counts, read_proteus
from rheostat.sim.traces.registry import TraceKind, build_trace, build_traces
from rheostat.sim.traces.trace import Trace, merge

__all__ = [
    "Trace",
    "TraceKind",
    "build_trace",
    "build_traces",
    "diurnal",
    "from_schedule",
    "gamma_bursts",
    "merge",
    "poisson",
    "read_counts",
    "read_proteus",
    "step",
]
