import nerf_vae_jax  # noqa: F401  (first: its process defaults must precede numpy's and JAX's import)
