"""NeRF-VAE on shape_scenes.

  python -m experiments.train --config=experiments/configs/shape_scenes.py:tiny --workdir=/tmp/nerf_vae_tiny
  python -m experiments.train --config=experiments/configs/shape_scenes.py:global --workdir=gs://.../global
  python -m experiments.train --config=experiments/configs/shape_scenes.py:grid --workdir=...

Variants:
  ``tiny``            32x32 (shape_scenes/32px, 20,000 training scenes), the CPU demo: the best recipe
                      for the demo's 1,800 steps (RESULTS.md): grid latent with colour features,
                      context views among the targets, 3/4 of the rays on
                      likely-object pixels, small FiLM initialisation; learning rate 4e-3 and the KL
                      warmed up over the whole run (``--config.train.num_steps=N`` moves both).
  ``tiny_long``       ``tiny`` for 6,500 steps (the documented one-hour CPU run; the KL warm-up follows
                      the run): a checkpoint every 500 steps, all kept for learning curves (RESULTS.md,
                      "tiny's schedule over 6,500 steps").
  ``tiny_reference``  the same size with the reference's choices: one global latent, held-out targets
                      only, uniform rays, zero FiLM initialisation (the study's baseline).
  ``global``          64px, the reference's choices (one global latent): paper scale.
  ``grid``            64px, the recipe of ``tiny`` at paper scale (its learning rate and KL warm-up are
                      the reference's; not yet trained: no GPU so far).
Any field can be overridden: ``--config.model.latent_dim=64``.

Memory (training step, per device; BENCHMARKS.md, README "Choosing batch,
micro-batches and remat"): ``global`` needs about 1.22 GiB per scene in a
micro-batch (0.17 GiB with ``model.remat_chunks=8``) plus 0.03 GiB of
parameters and Adam state; its global batch of 64 on one 80 GB GPU needs
``--config.train.microbatches=2`` (about 39 GiB) or 4. ``tiny`` (grid latent,
32x32, 256 rays) needs about 0.056 GiB per scene.
"""

from ml_collections import config_dict

VARIANTS = ("tiny", "tiny_long", "tiny_reference", "global", "grid")


def get_config(arg: str = "tiny") -> config_dict.ConfigDict:
  if arg not in VARIANTS:
    raise ValueError(f"Unknown variant {arg!r} of shape_scenes.py; choose one of {', '.join(VARIANTS)}.")
  tiny = arg.startswith("tiny")
  recipe = arg in ("tiny", "tiny_long", "grid")  # the changes of the CPU study (RESULTS.md); others: the reference
  long_run = arg == "tiny_long"  # tiny's recipe for 6,500 steps, every checkpoint kept for learning curves
  c = config_dict.ConfigDict()
  c.variant = arg
  c.seed = 0  # parameters, data order and every random draw derive from it

  c.data = config_dict.ConfigDict()
  c.data.name = "shape_scenes/32px" if tiny else "shape_scenes/64px"  # TFDS name/config
  c.data.data_dir = config_dict.placeholder(str)  # None: TFDS's default data dir
  c.data.min_context = 1  # context views per scene are drawn from [min_context, max_context]
  c.data.max_context = 4
  c.data.num_targets = 2  # target views per scene (rays are sampled from these)
  c.data.workers = 0  # grain worker processes (0: read in the main process)

  c.model = config_dict.ConfigDict()
  c.model.latent = "grid" if recipe else "global"  # "global" or "grid"
  c.model.latent_dim = 16 if recipe else (64 if tiny else 128)  # D (per cell if grid)
  c.model.grid_size = 8  # grid only: G cells per axis over the scene's bounding cube
  c.model.film_init_scale = 0.02 if recipe else 0.0  # std of the FiLM kernels at initialisation (0: zeros)
  c.model.encoder_channels = (16, 32, 64) if tiny else (32, 64, 128, 256)  # per ResNet stage
  c.model.encoder_cells = 1  # residual cells per stage
  c.model.mlp_width = 64 if tiny else 256  # scene-function hidden width
  c.model.mlp_depth = 4  # FiLM-conditioned hidden layers
  c.model.position_frequencies = 6 if tiny else 8  # positional-encoding octaves for points
  c.model.direction_frequencies = 3  # ... for view directions
  c.model.num_coarse = 24 if tiny else 64  # stratified samples per ray
  c.model.num_fine = 24 if tiny else 64  # inverse-CDF samples per ray
  # Grid only (the global latent ignores them): a scene-wide latent token for the background colour, and
  # the views' colours beside the encoder's GroupNorm-ed features. Colour features alone, at the demo's
  # 1,800 steps over two seeds: mask IoU 0.66-0.67 and +4.9-5.1 dB from 4 views, against 0.41-0.42 and
  # +2.9-3.0 dB with the token too (RESULTS.md, "colour features without the token"). The token holds the
  # objects back: with it they do not turn opaque, in short runs or long ones ("the long-run recipe").
  # Over 6,500 steps (the long recipe of 2026-11-26, 3a1b9fa), colour features: IoU 0.668 and +5.82 dB, against 0.589
  # and +5.40 without.
  c.model.background_token = False
  c.model.colour_features = recipe
  c.model.posterior = "average"  # "average" (the reference) or "poe" (product of experts)
  # Grid only: the prior of the cells. "independent": N(0, I) on every cell (the reference); "hierarchical":
  # a scene-level z0 ~ N(0, I) and p(cells | z0) (nerf_vae_jax/models/prior.py). At the demo's 1,800 steps the
  # hierarchical prior with a per-cell decoder beat the independent one on reconstruction, the IWAE bound and
  # the samples' Fréchet distance (RESULTS.md, "Can the model sample scenes?").
  c.model.prior = "hierarchical" if recipe else "independent"
  c.model.prior_net = "per_cell"  # hierarchical: "per_cell" (a dense basis per cell) or "pyramid" (2 -> 4 -> 8)
  c.model.top_dim = 64  # hierarchical: size of z0
  c.model.prior_channels = 16  # hierarchical: channels of its encoder's and decoder's 3-D convolutions
  c.model.top_down = 0  # hierarchical: features of z0 per cell that the scene function reads beside the cells
  c.model.dtype = "float32"  # matmul dtype in encoder and MLP: "float32" or "bfloat16"
  c.model.remat_chunks = 0  # >0: rematerialise the scene function over this many ray chunks (memory / C)

  c.loss = config_dict.ConfigDict()
  c.loss.num_rays = 256 if tiny else 1024  # target rays per scene per step
  c.loss.likelihood_scale = 0.1  # std of the Gaussian pixel likelihood (colours in [0, 1])
  c.loss.beta = 1.0  # KL weight after warm-up
  # Linear KL warm-up from 0 (None: over the whole run, train.num_steps, whatever it is set to). tiny: over
  # its whole run, which let objects become opaque sooner at the same final objective (RESULTS.md, "the
  # demo's schedule").
  c.loss.beta_warmup_steps = config_dict.placeholder(int) if tiny and recipe else (200 if tiny else 10_000)
  c.loss.free_bits = 0.0  # nats per scene below which the KL is not penalised
  # Hierarchical prior: p(cells | z0) learns from the whole KL while beta warms up (the encoder's side is scaled
  # by beta). Without it z0 collapsed onto N(0, I) at the demo's length (RESULTS.md, "Can the model sample scenes?").
  c.loss.kl_balance = True
  c.loss.coarse_weight = 0.1  # weight of the coarse pass's likelihood
  c.loss.targets = "all" if recipe else "held_out"  # rays from the target views, or context views too ("all")
  # Share of rays from likely-object pixels (importance-weighted). 0.75 against 0.5: mask IoU 0.49 against
  # 0.32 at the demo's 1,800 steps, at a better ELBO (RESULTS.md, "object-focused rays"); over 6,500 steps
  # with lr 4e-3 and the KL warmed over the run, IoU 0.750 against 0.668 for 0.5, lr 2e-3 and a 200-step
  # warm-up (RESULTS.md, "tiny's schedule over 6,500 steps").
  c.loss.object_fraction = 0.75 if recipe else 0.0

  c.train = config_dict.ConfigDict()
  c.train.num_steps = (6500 if long_run else 1800) if tiny else 500_000
  c.train.batch_size = 8 if tiny else 64  # global, in scenes; divisible by the device count
  c.train.microbatches = 1  # sequential slices of each device's share, gradients accumulated (memory / M)
  c.train.learning_rate = (4e-3 if recipe else 2e-3) if tiny else 5e-4
  c.train.warmup_steps = 100 if tiny else 2_000
  c.train.final_learning_rate_ratio = 0.01  # cosine decay ends at this fraction of the peak
  c.train.grad_clip = 1.0  # global-norm clipping
  c.train.memory_limit_gib = config_dict.placeholder(float)  # per device; None: what the device reports
  c.train.stop_check_every = 10  # several processes: steps between agreeing on a SIGTERM / the time budget
  c.train.time_budget_minutes = 0.0  # stop (with a checkpoint) after this much wall-clock time (0: no limit)
  c.train.checkpoint_every = (500 if long_run else 250) if tiny else 5_000
  c.train.keep_checkpoints = 100 if long_run else 3  # tiny_long: every checkpoint, for curves
  c.train.log_every = 50 if tiny else 500
  c.train.image_every = 500 if tiny else 10_000  # TensorBoard images

  c.eval = config_dict.ConfigDict()
  c.eval.num_scenes = 64 if tiny else 500
  c.eval.iwae_samples = 8
  c.eval.chunk = 4096  # rays per rendering chunk
  return c
