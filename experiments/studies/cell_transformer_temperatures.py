"""Study: the FD of cell_transformer_proto.py's prior at temperatures. cell_transformer_temperatures.py WORKDIR
PARAMS.npy T1 T2 ... (writes cell_transformer_samples_t<T>.png here)"""
import sys, time
import jax, jax.numpy as jnp, numpy as np
from nerf_vae_jax.train import run_dir
from nerf_vae_jax.data import source
from nerf_vae_jax.evaluation import probe_net, sample_metrics
from nerf_vae_jax.models import cell_transformer as ct
from nerf_vae_jax import visualize
workdir, path = sys.argv[1], sys.argv[2]
d = np.load(path, allow_pickle=True).item()
p = d["params"]
# The prototype's pytree -> the module's names (same layout).
params = {"inp": p["inp"], "pos": p["pos"], "start": p["start"], "blocks": p["blocks"], "ln": p["ln"], "head": p["head"]}
prior = ct.CellTransformer(jax.tree.map(jnp.asarray, params), jnp.asarray(d["m"]), jnp.asarray(d["s"]))
config, model, spec, mparams, step = run_dir.restore_params(workdir, None)
probe = probe_net.load_or_train(config.data.name, config.data.data_dir)
src = source.SceneSource(config.data.name, "test", config.data.data_dir)
draw = jax.jit(ct.sample, static_argnums=2)
for t in map(float, sys.argv[3:]):
  sampler = lambda model_, params_, key, num, temperature=1.0: draw(prior, key, num, t).reshape((num,) + model.latent_shape)
  t1 = time.time()
  met, renders = sample_metrics.measure(model, mparams, src, probe, num_scenes=128, sample_prior=sampler, prior_name="ar")
  print(f"T={t}:", sample_metrics.summary_line(met), f"({time.time() - t1:.0f} s)", flush=True)
  rows = [[renders["real"][i, 0] for i in range(8)], [visualize.to_uint8(renders["samples"]["rgb"][i, 0]) for i in range(8)]]
  visualize.save_png(f"cell_transformer_samples_t{t}.png", visualize.grid(rows), scale=3)
