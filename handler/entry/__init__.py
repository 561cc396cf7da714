"""The outermost layer: Function Compute's entry points, the event adapters, the local server and the command line."""
