"""The network path of edge clients: bandwidth traces, uplink estimation, and real link
emulation (network namespaces shaped with `tc`)."""
