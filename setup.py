"""nerf_vae_jax: NeRF-VAE (Kosiorek, Strathmann et al., ICML 2021) in JAX."""
import setuptools

setuptools.setup(
    name="nerf_vae_jax",
    version="0.1.0",
    description="NeRF-VAE: a geometry-aware 3D scene generative model, in JAX.",
    packages=setuptools.find_packages(include=["nerf_vae_jax", "nerf_vae_jax.*", "experiments", "experiments.*"]),
    package_data={"nerf_vae_jax": ["evaluation/probes/*.msgpack", "evaluation/probes/*.json"]},  # published probes
    python_requires=">=3.11",
    install_requires=[l.strip() for l in open("requirements.txt") if l.strip() and not l.startswith("#")],
)
