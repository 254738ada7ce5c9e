"""Study: prior samples refined by a Markov chain through the model: render the latent from the 4 cameras of a
training scene, encode the renders, draw z from that posterior (or take its mean at the last step); repeat.
python experiments/studies/prior_chain.py RUN model|fitted STEPS,STEPS,.. [SCENES [sample|mean]]
(RESULTS.md: on run long61a, fitted prior fitted to whole posteriors, 0,1,2,4 128; 8 host devices)."""
import sys, time
import jax, jax.numpy as jnp, numpy as np
from nerf_vae_jax.train import run_dir
from nerf_vae_jax.data import source
from nerf_vae_jax.evaluation import probe_net, sample_metrics, second_stage
from nerf_vae_jax.models import nerf_vae

workdir, kind, chain = sys.argv[1], sys.argv[2], [int(s) for s in sys.argv[3].split(",")]
scenes = int(sys.argv[4]) if len(sys.argv) > 4 else 128
MODE = sys.argv[5] if len(sys.argv) > 5 else "sample"  # sample | mean
config, model, spec, params, step = run_dir.restore_params(workdir, None)
train = source.SceneSource(config.data.name, "train", config.data.data_dir)
test = source.SceneSource(config.data.name, "test", config.data.data_dir)
probe = probe_net.load_or_train(config.data.name, config.data.data_dir)
base = nerf_vae.sample_prior if kind == "model" else second_stage.sampler(model, second_stage.load(workdir, step, kind)[0])
cams = [train[i] for i in range(scenes)]
intr = np.stack([s["intrinsics"][:4] for s in cams]); c2w = np.stack([s["cam_to_world"][:4] for s in cams])
h, w = cams[0]["images"].shape[1:3]
infer = jax.jit(lambda p, ctx: nerf_vae.infer(model, p, ctx))
post = jax.jit(lambda p, q, k: nerf_vae.sample_posterior(model, p, q, k).z)
mean_of = jax.jit(lambda p, q: nerf_vae.posterior_latent(model, p, q))


def chained(n_steps):
  def sample(model_, params_, key, num, temperature=1.0):
    k0, key = jax.random.split(key)
    z = np.asarray(base(model_, params_, k0, num, temperature))
    for i in range(n_steps):
      r = sample_metrics.render_latents(model, params, z, intr[:num], c2w[:num], h, w)
      imgs = np.round(np.clip(r["rgb"], 0, 1) * 255).astype(np.uint8)
      zs = []
      for s in range(0, num, 32):
        ctx = {"context_images": imgs[s:s + 32], "context_intrinsics": intr[s:s + 32],
               "context_cam_to_world": c2w[s:s + 32], "context_mask": np.ones((len(imgs[s:s + 32]), 4), bool)}
        q = infer(params, ctx)
        last = MODE == "mean" and i == n_steps - 1
        zs.append(np.asarray(mean_of(params, q) if last else post(params, q, jax.random.fold_in(key, 1000 * i + s))))
      z = np.concatenate(zs)
    return z
  return sample


refs = {}
for n in chain:
  t = time.time()
  met, _ = sample_metrics.measure(model, params, test, probe, num_scenes=scenes, sample_prior=chained(n),
                                  prior_name=f"{kind}+chain{n}", references=refs)
  print(f"{kind} prior, {n} chain steps ({MODE}):", sample_metrics.summary_line(met), f"({time.time() - t:.0f} s)",
        flush=True)
