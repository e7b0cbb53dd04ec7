"""Cost before training: parameters, memory and FLOPs of a strategy, and memory per device."""
