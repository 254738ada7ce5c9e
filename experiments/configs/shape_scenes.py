"""NeRF-VAE on shape_scenes: a base config (the reference at paper scale) and one table of overrides per variant.

  python -m experiments.train --config=experiments/configs/shape_scenes.py:tiny --workdir=/tmp/nerf_vae_tiny
  python -m experiments.train --config=experiments/configs/shape_scenes.py:grid --workdir=gs://.../grid

Variants (``VARIANTS``, each the base plus its table):
  ``global``          64px, the reference's choices (one global latent): paper scale, the base itself.
  ``grid``            ``global`` + ``RECIPE``: the recipe of the CPU study at paper scale (its learning rate and
                      KL warm-up are the reference's; not yet trained).
  ``tiny_reference``  ``global`` + ``TINY``: 32x32 (shape_scenes/32px), small networks, the reference's choices.
  ``tiny``            ``tiny_reference`` + ``RECIPE`` + its schedule: the CPU demo (``make demo``, 1,800 steps).
  ``tiny_long``       ``tiny`` for 6,500 steps, every checkpoint kept for learning curves.
  ``grid_4min``       ``grid`` on shape_scenes/64px_mini in bfloat16 for 800 steps (4 minutes on one H100).
Any field can be overridden: ``--config.model.latent_dim=64``. Each choice's evidence is in RESULTS.md, under the
section named beside it; memory per device in BENCHMARKS.md ("Memory per device").
"""

from ml_collections import config_dict

# 32x32 scenes and networks small enough for a 2-core CPU.
TINY = {
    "data.name": "shape_scenes/32px",
    "model.latent_dim": 64,
    "model.encoder_channels": (16, 32, 64),
    "model.mlp_width": 64,
    "model.position_frequencies": 6,
    "model.num_coarse": 24,
    "model.num_fine": 24,
    "loss.num_rays": 256,
    "loss.beta_warmup_steps": 200,
    "train.num_steps": 1800,
    "train.batch_size": 8,
    "train.learning_rate": 2e-3,
    "train.warmup_steps": 100,
    "train.checkpoint_every": 250,
    "train.log_every": 50,
    "train.image_every": 500,
    "eval.num_scenes": 64,
}

# What makes the model learn scenes (RESULTS.md, "The CPU study"), and sample them.
RECIPE = {
    "model.latent": "grid",  # a latent grounded in the world ("The CPU study")
    "model.latent_dim": 16,
    "model.film_init_scale": 0.02,  # ("The CPU study")
    "model.colour_features": True,  # ("Colour features without the token")
    "model.prior": "factor",  # ("A low-rank Gaussian as the model's own prior")
    # Each view vouches for the cells up to its predicted surface; hidden ones follow the prior ("A depth-aware
    # lift with the factor prior").
    "model.depth_lift": True,
    "loss.targets": "all",  # context views among the targets ("The CPU study")
    "loss.object_fraction": 0.75,  # ("Object-focused rays and the posterior's combination")
    # Less haze: opaque objects and clear space, and better prior samples ("Where the haze comes from").
    "loss.opacity_weight": 0.05,
    "loss.density_noise": 1.0,
    # The coarse pass only places the fine samples: no backward pass for it. The step 19% shorter on the CPU
    # ("The coarse pass without a gradient"), 1.44x faster with 46% less memory for `grid` on one H200
    # (BENCHMARKS.md, "The coarse pass without a gradient on one GPU").
    "loss.coarse_weight": 0.0,
}

_TINY_RECIPE = {
    **TINY, **RECIPE,
    # The KL warmed up over the whole run (None: train.num_steps, whatever it is) at a higher learning rate
    # ("The demo's schedule: learning rate and KL weight").
    "train.learning_rate": 4e-3,
    "loss.beta_warmup_steps": None,
}

VARIANTS = {
    "tiny": _TINY_RECIPE,
    # ("`tiny`'s schedule over 6,500 steps: the new `tiny_long`")
    "tiny_long": {**_TINY_RECIPE, "train.num_steps": 6500, "train.checkpoint_every": 500,
                  "train.keep_checkpoints": 100},
    "tiny_reference": TINY,
    "global": {},
    "grid": RECIPE,
    # grid at 64px on few scenes (shape_scenes/64px_mini), sized to train in 4 minutes on one H100 in bfloat16
    # (experiments/gpu_suite.sh): a short schedule with the KL warmed up over the whole run.
    "grid_4min": {**RECIPE, "data.name": "shape_scenes/64px_mini", "model.dtype": "bfloat16",
                  "train.num_steps": 800, "train.warmup_steps": 100, "train.learning_rate": 1e-3,
                  "loss.beta_warmup_steps": None, "train.time_budget_minutes": 4.0, "train.checkpoint_every": 200,
                  "train.log_every": 50, "train.image_every": 0, "eval.num_scenes": 64},
}


def base() -> config_dict.ConfigDict:
  """The reference at paper scale (the ``global`` variant); every field, with what it does."""
  c = config_dict.ConfigDict()
  c.variant = "global"
  c.seed = 0  # parameters, data order and every random draw derive from it

  c.data = config_dict.ConfigDict()
  c.data.name = "shape_scenes/64px"  # TFDS name/config
  c.data.data_dir = config_dict.placeholder(str)  # None: TFDS's default data dir
  c.data.min_context = 1  # context views per scene are drawn from [min_context, max_context]
  c.data.max_context = 4
  c.data.num_targets = 2  # target views per scene (rays are sampled from these)
  # grain worker processes: -1 picks (none on the CPU, where the step needs the cores; else all cores but two,
  # at most 16), 0 reads in the main process.
  c.data.workers = -1

  c.model = config_dict.ConfigDict()
  c.model.latent = "global"  # "global" or "grid"
  c.model.latent_dim = 128  # D (per cell if grid)
  c.model.grid_size = 8  # grid only: G cells per axis over the scene's bounding cube
  c.model.film_init_scale = 0.0  # std of the FiLM kernels at initialisation (0: zeros)
  c.model.encoder_channels = (32, 64, 128, 256)  # per ResNet stage
  c.model.encoder_cells = 1  # residual cells per stage
  c.model.mlp_width = 256  # scene-function hidden width
  c.model.mlp_depth = 4  # FiLM-conditioned hidden layers
  c.model.position_frequencies = 8  # positional-encoding octaves for points
  c.model.direction_frequencies = 3  # ... for view directions
  c.model.num_coarse = 64  # stratified samples per ray
  c.model.num_fine = 64  # inverse-CDF samples per ray
  # Grid only: a scene-wide latent token for the background colour (kept to rerun its studies: it keeps the
  # objects from turning opaque, "Colour features without the token"), and the views' colours beside the
  # encoder's GroupNorm-ed features.
  c.model.background_token = False
  c.model.colour_features = False
  c.model.posterior = "average"  # "average" (the reference) or "poe" (product of experts)
  # Grid only: the prior of the cells. "independent": N(0, I) on every cell (the reference); "factor": one
  # Gaussian over the whole latent with prior_rank shared factors, the second-stage prior's family learned with
  # the model (nerf_vae_jax/models/priors.py).
  c.model.prior = "independent"
  c.model.prior_rank = 128  # factor: its shared factors (as the second-stage prior, experiments.fit_prior)
  # Grid, average: a view vouches for a cell by its depth against the surface the view predicts there; hidden
  # cells follow the prior ("How far are samples from scenes?").
  c.model.depth_lift = False
  c.model.dtype = "float32"  # matmul dtype in encoder and MLP: "float32" or "bfloat16"
  c.model.remat_chunks = 0  # >0: rematerialise the scene function over this many ray chunks (memory / C)

  c.loss = config_dict.ConfigDict()
  c.loss.num_rays = 1024  # target rays per scene per step
  c.loss.likelihood_scale = 0.1  # std of the Gaussian pixel likelihood (colours in [0, 1])
  c.loss.beta = 1.0  # KL weight after warm-up
  c.loss.beta_warmup_steps = config_dict.placeholder(int)  # linear KL warm-up from 0 (None: the whole run)
  c.loss.beta_warmup_steps = 10_000
  c.loss.free_bits = 0.0  # nats per scene below which the KL is not penalised
  # A learned (factor) prior learns from the whole KL while beta warms up (the encoder's side is scaled by
  # beta); without it the hierarchical prior's z0 collapsed ("Can the model sample scenes?").
  c.loss.kl_balance = True
  c.loss.coarse_weight = 0.1  # weight of the coarse pass's likelihood (0: the coarse pass takes no gradient)
  c.loss.targets = "held_out"  # rays from the target views, or context views too ("all")
  c.loss.object_fraction = 0.0  # share of rays from likely-object pixels (importance-weighted)
  c.loss.opacity_weight = 0.0  # weight of the opacity penalty per pixel (objectives.opacity_penalty)
  c.loss.opacity_warmup_steps = config_dict.placeholder(int)  # its linear ramp from 0 (None: the whole run)
  # its mean over the sampled rays ("sampled": they lean to objects by object_fraction) or over whole images
  # ("image": importance-weighted, as the likelihood; mostly backdrop)
  c.loss.opacity_estimate = "sampled"
  c.loss.density_noise = 0.0  # std of the noise on raw densities in training renders (NeRF's regulariser)

  c.train = config_dict.ConfigDict()
  c.train.num_steps = 500_000
  c.train.batch_size = 64  # global, in scenes; divisible by the device count
  c.train.microbatches = 1  # sequential slices of each device's share, gradients accumulated (memory / M)
  c.train.learning_rate = 5e-4
  c.train.warmup_steps = 2_000
  c.train.final_learning_rate_ratio = 0.01  # cosine decay ends at this fraction of the peak
  c.train.grad_clip = 1.0  # global-norm clipping
  c.train.memory_limit_gib = config_dict.placeholder(float)  # per device; None: what the device reports
  c.train.stop_check_every = 10  # several processes: steps between agreeing on a SIGTERM / the time budget
  c.train.time_budget_minutes = 0.0  # stop (with a checkpoint) after this much wall-clock time (0: no limit)
  c.train.checkpoint_every = 5_000
  c.train.keep_checkpoints = 3
  c.train.log_every = 500
  c.train.image_every = 10_000  # TensorBoard images

  c.eval = config_dict.ConfigDict()
  c.eval.num_scenes = 500
  c.eval.iwae_samples = 8
  c.eval.chunk = 4096  # rays per rendering chunk
  return c


def get_config(arg: str = "tiny") -> config_dict.ConfigDict:
  if arg not in VARIANTS:
    raise ValueError(f"Unknown variant {arg!r} of shape_scenes.py; choose one of {', '.join(VARIANTS)}.")
  c = base()
  c.update_from_flattened_dict({"variant": arg, **VARIANTS[arg]})
  return c
