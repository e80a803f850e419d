"""aelab: autoencoders as pure JAX/Flax functions."""
