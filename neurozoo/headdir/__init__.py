"""Head direction: RNNs that integrate angular velocity (Cueva et al., 2020)."""
