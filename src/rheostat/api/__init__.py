"""The Open Inference Protocol (KServe v2) HTTP API: wire codec, routes and handlers."""
