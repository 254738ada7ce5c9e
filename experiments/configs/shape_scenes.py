"""NeRF-VAE on shape_scenes.

  python -m experiments.train --config=experiments/configs/shape_scenes.py:tiny --workdir=/tmp/nerf_vae_tiny
  python -m experiments.train --config=experiments/configs/shape_scenes.py:global --workdir=gs://.../global
  python -m experiments.train --config=experiments/configs/shape_scenes.py:attentive --workdir=...

Variants: ``tiny`` (32x32, CPU demo and tests), ``global`` (64px, one global
latent, paper scale) and ``attentive`` (64px, latent tokens read by
cross-attention). Any field can be overridden: ``--config.model.latent_dim=64``.
"""

from ml_collections import config_dict

VARIANTS = ("tiny", "global", "attentive")


def get_config(arg: str = "tiny") -> config_dict.ConfigDict:
  if arg not in VARIANTS:
    raise ValueError(f"Unknown variant {arg!r} of shape_scenes.py; choose one of {', '.join(VARIANTS)}.")
  tiny = arg == "tiny"
  c = config_dict.ConfigDict()
  c.variant = arg
  c.seed = 0  # parameters, data order and every random draw derive from it

  c.data = config_dict.ConfigDict()
  c.data.name = "shape_scenes/tiny" if tiny else "shape_scenes/64px"  # TFDS name/config
  c.data.data_dir = config_dict.placeholder(str)  # None: TFDS's default data dir
  c.data.min_context = 1  # context views per scene are drawn from [min_context, max_context]
  c.data.max_context = 4
  c.data.num_targets = 2  # target views per scene (rays are sampled from these)
  c.data.workers = 0  # grain worker processes (0: read in the main process)

  c.model = config_dict.ConfigDict()
  c.model.latent = "global" if arg != "attentive" else "attentive"  # "global" or "attentive"
  c.model.latent_dim = 64 if tiny else (128 if arg == "global" else 64)  # D (per token if attentive)
  c.model.num_tokens = 64  # attentive only: number of latent tokens
  c.model.encoder_channels = (16, 32, 64) if tiny else (32, 64, 128, 256)  # per ResNet stage
  c.model.encoder_cells = 1  # residual cells per stage
  c.model.mlp_width = 64 if tiny else 256  # scene-function hidden width
  c.model.mlp_depth = 4  # FiLM-conditioned hidden layers
  c.model.position_frequencies = 6 if tiny else 8  # positional-encoding octaves for points
  c.model.direction_frequencies = 3  # ... for view directions
  c.model.num_heads = 4  # attentive only
  c.model.num_coarse = 24 if tiny else 64  # stratified samples per ray
  c.model.num_fine = 24 if tiny else 64  # inverse-CDF samples per ray
  c.model.posterior = "average"  # "average" (the reference) or "poe" (product of experts)
  c.model.dtype = "float32"  # matmul dtype in encoder and MLP: "float32" or "bfloat16"

  c.loss = config_dict.ConfigDict()
  c.loss.num_rays = 256 if tiny else 1024  # target rays per scene per step
  c.loss.likelihood_scale = 0.1  # std of the Gaussian pixel likelihood (colours in [0, 1])
  c.loss.beta = 1.0  # KL weight after warm-up
  c.loss.beta_warmup_steps = 200 if tiny else 10_000  # linear KL warm-up from 0
  c.loss.free_bits = 0.0  # nats per scene below which the KL is not penalised
  c.loss.coarse_weight = 0.1  # weight of the coarse pass's likelihood

  c.train = config_dict.ConfigDict()
  c.train.num_steps = 1200 if tiny else 500_000
  c.train.batch_size = 8 if tiny else 64  # global, in scenes; divisible by the device count
  c.train.learning_rate = 2e-3 if tiny else 5e-4
  c.train.warmup_steps = 100 if tiny else 2_000
  c.train.grad_clip = 1.0  # global-norm clipping
  c.train.checkpoint_every = 250 if tiny else 5_000
  c.train.keep_checkpoints = 3
  c.train.log_every = 50 if tiny else 500
  c.train.image_every = 500 if tiny else 10_000  # TensorBoard images

  c.eval = config_dict.ConfigDict()
  c.eval.num_scenes = 64 if tiny else 500
  c.eval.iwae_samples = 8
  c.eval.chunk = 4096  # rays per rendering chunk
  return c
