"""Training click-aware networks with simulated clicks."""
