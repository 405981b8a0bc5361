"""Discrete-event simulation of the server: workloads, the simulator loop and run metrics."""
