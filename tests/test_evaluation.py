"""Evaluation: metric functions against references, the per-scene NeRF,
test-time refinement, and the evaluate / generate / nerf_baseline commands
on a toy checkpoint (schema, report, bad input)."""

import functools
import json
import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import run_ok, small_config, train_args

from experiments.configs import shape_scenes
from nerf_vae_jax import batching
from nerf_vae_jax import image_metrics
from nerf_vae_jax.evaluation import background_error, protocol, view_metrics
from nerf_vae_jax.train import update
from nerf_vae_jax.train import run_dir
from nerf_vae_jax.baselines import nerf
from nerf_vae_jax.data import source
from nerf_vae_jax.models import nerf_vae, objectives, ray_sampling


# ---------------------------------------------------------------- metrics

def _ssim_reference(a, b, size=11, sigma=1.5):
  """SSIM by its definition: an explicit 2-D Gaussian window at every valid position, per channel."""
  g = np.exp(-0.5 * ((np.arange(size) - (size - 1) / 2) / sigma) ** 2)
  w = np.outer(g, g) / np.outer(g, g).sum()
  c1, c2 = 0.01 ** 2, 0.03 ** 2
  vals = []
  for ch in range(a.shape[-1]):
    for i in range(a.shape[0] - size + 1):
      for j in range(a.shape[1] - size + 1):
        x, y = a[i:i + size, j:j + size, ch], b[i:i + size, j:j + size, ch]
        mx, my = (w * x).sum(), (w * y).sum()
        vx, vy, cxy = (w * x * x).sum() - mx ** 2, (w * y * y).sum() - my ** 2, (w * x * y).sum() - mx * my
        vals.append((2 * mx * my + c1) * (2 * cxy + c2) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2)))
  return np.mean(vals)


def test_ssim_matches_its_definition_and_closed_forms():
  rng = np.random.default_rng(0)
  a = rng.uniform(size=(20, 17, 3))
  b = np.clip(a + 0.2 * rng.normal(size=a.shape), 0, 1)
  assert image_metrics.ssim(a, b) == pytest.approx(_ssim_reference(a, b), rel=1e-9)
  assert image_metrics.ssim(a, a) == pytest.approx(1.0)
  # Constant images: only the luminance term is left, (2 mu_a mu_b + c1) / (mu_a^2 + mu_b^2 + c1).
  ca, cb = np.full((16, 16, 3), 0.3), np.full((16, 16, 3), 0.6)
  assert image_metrics.ssim(ca, cb) == pytest.approx((2 * 0.18 + 1e-4) / (0.09 + 0.36 + 1e-4))
  batch = image_metrics.ssim(np.stack([a, a]), np.stack([a, b]))  # leading axes carried
  np.testing.assert_allclose(batch, [1.0, image_metrics.ssim(a, b)])


def test_psnr_and_scene_metrics_on_known_images(tiny_data_dir):
  assert image_metrics.psnr(0.01) == pytest.approx(20.0)
  scene = source.SceneSource("shape_scenes/tiny", "test", tiny_data_dir)[0]
  held = slice(protocol.CONTEXT_CANDIDATES, None)
  truth = scene["images"][held] / 255.0
  perfect = view_metrics.scene_metrics(truth, scene["depths"][held], (scene["masks"][held] > 0).astype(float), scene, 2,
                                  held)
  assert perfect["mse"] == 0 and perfect["psnr"] == pytest.approx(100.0)
  assert perfect["ssim"] == pytest.approx(1.0) and perfect["depth_mae"] == 0 and perfect["mask_iou"] == 1.0
  mean_colour = scene["images"][:2].reshape(-1, 3).mean(0) / 255.0
  assert perfect["baseline_psnr"] == pytest.approx(-10 * np.log10(np.mean((truth - mean_colour) ** 2)))
  # Shifted by 0.1 (inside [0, 1]), depth off by 0.25 everywhere, nothing opaque.
  shifted = np.clip(truth, 0, 0.9) + 0.1
  m = view_metrics.scene_metrics(shifted, scene["depths"][held] + 0.25, np.zeros(truth.shape[:-1]), scene, 2, held)
  assert m["mse"] == pytest.approx(np.mean((shifted - truth) ** 2))
  assert m["depth_mae"] == pytest.approx(0.25, rel=1e-5) and m["mask_iou"] == 0.0
  assert perfect["hazy"] == m["hazy"] == 0.0  # opacities of exactly 0 or 1 are not haze
  # Half-transparent objects on a clear backdrop: every object pixel is haze, no background pixel.
  fg = scene["masks"][held] > 0
  m = view_metrics.scene_metrics(truth, scene["depths"][held], 0.5 * fg, scene, 2, held)
  assert m["hazy_objects"] == 1.0 and m["hazy_background"] == 0.0 and m["hazy"] == pytest.approx(fg.mean())
  assert m["fog"] == m["hazy"]  # nothing opaque anywhere: all the haze is fog
  summary = view_metrics.summarize([m, perfect])  # and evaluate's means carry them
  assert summary["hazy_objects"] == 0.5 and summary["hazy"] == pytest.approx(fg.mean() / 2)
  # Wrong by 0.2 on the objects only, then on the background only: each error lands in its own metric.
  fg = (scene["masks"][held] > 0)[..., None]
  for wrong, hit, clean in ((fg, "object_mse", "background_mse"), (~fg, "background_mse", "object_mse")):
    off = np.where(truth <= 0.8, truth + 0.2, truth - 0.2)  # 0.2 from the truth, inside [0, 1]
    m = view_metrics.scene_metrics(np.where(wrong, off, truth), scene["depths"][held],
                              np.zeros(truth.shape[:-1]), scene, 2, held)
    assert m[hit] == pytest.approx(0.04, rel=1e-6) and m[clean] == 0.0


# ---------------------------------------------------------------- the NeRF baseline and refinement

def test_nerf_baseline_fits_one_tiny_scene(tiny_data_dir):
  scene = source.SceneSource("shape_scenes/tiny", "test", tiny_data_dir)[3]
  config = shape_scenes.get_config("tiny")
  model = nerf.from_config(config.model, 1.0)
  params, fit_psnr = nerf.fit(model, scene["images"][None], scene["intrinsics"][None], scene["cam_to_world"][None],
                              np.array([8]), jax.random.PRNGKey(0), steps=150, num_rays=256)
  out = nerf.render_views(model, params, scene["intrinsics"][None, :2], scene["cam_to_world"][None, :2], 32, 32)
  m = view_metrics.scene_metrics(out["rgb"][0], out["depth"][0], out["acc"][0], scene, 8, slice(0, 2))
  # A NeRF that saw all 8 views renders two of them far better than their mean colour, with the objects'
  # silhouettes in place (at 150 steps about +12 dB and IoU 0.8; at 100, +8.7 dB and 0.66).
  assert m["psnr"] > m["baseline_psnr"] + 6.0, m
  assert float(fit_psnr[0]) > m["baseline_psnr"] + 6.0
  assert m["mask_iou"] > 0.5, m


def test_refinement_raises_the_context_elbo(tiny_data_dir):
  src = source.SceneSource("shape_scenes/tiny", "test", tiny_data_dir)
  config = small_config(tiny_data_dir, 1)  # conftest's toy model
  config.data.max_context = 4
  model = nerf_vae.from_config(config.model, 1.0)
  params = jax.jit(functools.partial(update.init_state, model, update.make_optimizer(config.train)))(
      batching.example(batching.for_config(config, src.spec.height, src.spec.width)), jax.random.PRNGKey(0))["params"]
  batch = protocol.context_batch([src[0], src[1]], 3)
  q = nerf_vae.infer(model, params, batch)
  settings = protocol.Settings(refine_steps=40, refine_rays=256)

  @jax.jit
  def context_elbo(q):  # a fixed-key estimate over 2048 context pixels per scene, per pixel
    rays = ray_sampling.sample_rays(batch["context_images"], batch["context_intrinsics"],
                                    batch["context_cam_to_world"], jax.random.PRNGKey(7), 2048, batch["context_mask"])
    ll, _, kl = objectives.posterior_samples(model, params, q, rays, jax.random.PRNGKey(0), num_samples=4,
                                             likelihood_scale=0.1)
    return jnp.mean(ll - kl, 0) / rays.pixels

  refined = jax.jit(lambda q: protocol.refine_posterior(model, params, batch, q, jax.random.PRNGKey(1), settings))(q)
  before, after = context_elbo(q), context_elbo(refined)
  assert np.all(np.asarray(after) > np.asarray(before) + 0.05), (before, after)


# ---------------------------------------------------------------- the commands

@pytest.fixture(scope="module")
def toy_run(runner_env, tmp_path_factory):
  """A 4-step toy run with checkpoints at steps 2 and 4."""
  e, data_dir = runner_env
  workdir = str(tmp_path_factory.mktemp("toy_run"))
  run_ok(e, train_args(data_dir, workdir, 4, ckpt_every=2))
  return e, data_dir, workdir


def _cmd(e, *args):
  return subprocess.run([sys.executable, "-m", *args], env=e, capture_output=True, text=True, timeout=600)


def test_a_subset_evaluation_gets_its_own_folder():
  """Fewer scenes or fewer context counts than the full evaluation never overwrite its metrics.json."""
  from nerf_vae_jax.evaluation.run import eval_folder
  assert eval_folder("test", 64, 64, (1, 2, 3, 4)) == "test"
  assert eval_folder("test", 8, 64, (1, 2, 3, 4)) == "test_8scenes"
  assert eval_folder("test_ood", 64, 64, (1, 4)) == "test_ood_k14"
  assert eval_folder("test", 8, 64, [4]) == "test_8scenes_k4"
  names = {eval_folder("test", n, 64, k) for n in (8, 64) for k in ((1, 2, 3, 4), (1, 4), (4,))}
  assert len(names) == 6  # every variant has a folder of its own


def test_evaluate_generate_and_baseline_write_metrics_images_and_a_report(toy_run):
  e, data_dir, workdir = toy_run
  r = _cmd(e, "experiments.evaluate", f"--workdir={workdir}", "--num_scenes=3", "--refine_steps=2",
           "--num_images=2")
  assert r.returncode == 0, r.stderr[-3000:]
  with open(os.path.join(workdir, "eval", "4", "test_3scenes", "metrics.json")) as f:  # a subset: its own folder
    m = json.load(f)
  assert (m["step"], m["split"], m["num_scenes"]) == (4, "test", 3)
  fields = {"num_context_views", "mse", "psnr", "object_mse", "background_mse", "ssim", "depth_mae", "mask_iou",
            "hazy", "fog", "hazy_objects", "hazy_background", "elbo_per_pixel", "iwae_per_pixel", "baseline_psnr",
            "baseline_mse"}
  for results in (m["results"], m["refined_results"]):
    assert [row["num_context_views"] for row in results] == [1, 2, 3, 4]
    for row in results:
      assert set(row) == fields and all(np.isfinite(v) for v in row.values())
      assert -1 <= row["ssim"] <= 1 and 0 <= row["mask_iou"] <= 1 and row["mse"] > 0 and row["object_mse"] > 0
      assert row["iwae_per_pixel"] >= row["elbo_per_pixel"] - 0.05  # IWAE tightens the ELBO (up to noise)
  scenes = [source.SceneSource("shape_scenes/tiny", "test", data_dir)[i] for i in range(3)]
  for row in m["results"]:  # the baseline, recomputed here from the data
    k = row["num_context_views"]
    psnrs = [-10 * np.log10(np.mean((s["images"][4:] / 255 - s["images"][:k].reshape(-1, 3).mean(0) / 255) ** 2))
             for s in scenes]
    assert row["baseline_psnr"] == pytest.approx(np.mean(psnrs), rel=1e-6)

  r = _cmd(e, "experiments.generate", f"--workdir={workdir}", "--num_samples=4", "--num_frames=4", "--num_pairs=1",
           "--num_steps=3", "--metric_scenes=8", "--far_side_scenes=3")
  assert r.returncode == 0, r.stderr[-3000:]
  assert "Fréchet distance" in r.stdout and "probe (shape_scenes/tiny" in r.stdout, r.stdout[-2000:]
  with open(os.path.join(workdir, "eval", "4", "generate", "metrics.json")) as f:
    g = json.load(f)
  fd = g["samples"]["frechet"]
  assert g["samples"]["num_scenes"] == 8 and all(np.isfinite(v) and v >= 0 for v in fd.values())
  assert fd["floor"] < fd["mean_colour"]  # real views are nearer each other than flat colours are to them
  assert 0 <= g["samples"]["objects"]["count_tv"] <= 1 and 0 <= g["samples"]["objects"]["haze_share"] <= 1
  assert g["far_side"]["num_scenes"] == 3 and g["far_side"]["pixels_seen"] + g["far_side"]["pixels_unseen"] > 0
  assert g["far_side"]["pixels_hidden"] <= g["far_side"]["pixels_unseen"]  # objects view 0 misses are unseen
  r = _cmd(e, "experiments.nerf_baseline", f"--workdir={workdir}", "--num_scenes=2", "--steps=10", "--group=4",
           "--context=1,4")
  assert r.returncode == 0, r.stderr[-3000:]
  with open(os.path.join(workdir, "eval", "nerf_baseline", "test", "metrics.json")) as f:
    b = json.load(f)
  assert [row["num_context_views"] for row in b["results"]] == [1, 4] and b["num_scenes"] == 2
  assert all(np.isfinite(row["psnr"]) and np.isfinite(row["context_psnr"]) for row in b["results"])

  root = os.path.join(workdir, "eval", "4")
  with open(os.path.join(root, "report.html")) as f:
    page = f.read()
  images = re.findall(r'src="([^"]+)"', page)
  for name in ("grid_k1.png", "grid_k4_refined.png", "orbit_0.gif", "prior_samples.gif", "interpolations.png",
               "comparison_test_3scenes.png", "samples_vs_data.png", "far_side.png"):
    assert any(i.endswith(name) for i in images), name
  for i in images:  # relative paths that exist: the report opens offline
    assert not i.startswith(("http", "/")) and os.path.isfile(os.path.join(root, i)), i
  with open(os.path.join(root, "comparison.md")) as f:
    assert "| K |" in f.read()


def test_background_breakdown_agrees_with_the_evaluation(toy_run):
  e, data_dir, workdir = toy_run
  _, model, _, params, _ = run_dir.restore_params(workdir)
  scenes = [source.SceneSource("shape_scenes/tiny", "test", data_dir)[i] for i in range(3)]
  rows = background_error.breakdown(model, params, scenes, 4)
  per_scene, preds = protocol.evaluate(model, params, scenes, 4, protocol.Settings(num_samples=1, num_rays=64))
  for row, m, acc, scene in zip(rows, per_scene, preds["acc"], scenes):
    assert row["background_mse"] == pytest.approx(m["background_mse"], rel=1e-4)
    assert row["background_opacity"] == pytest.approx(acc[scene["masks"][4:] == 0].mean(), rel=1e-4)
    assert 0 <= row["colour_error"] <= 1


def test_second_stage_priors_are_fitted_sampled_and_scored(toy_run):
  """experiments.fit_prior then generate --prior=fitted, in-process: the prior is saved beside the checkpoints,
  its samples are scored as the model's are, and the held-out bounds come under both priors; then the same
  for the cell transformer."""
  from nerf_vae_jax.evaluation import samples, second_stage
  from nerf_vae_jax import errors
  _, _, workdir = toy_run
  path = second_stage.fit_run(workdir, step=4, num_scenes=16, rank=4, log=lambda *a: None)
  assert path == os.path.join(workdir, "fitted_prior", "4.npz") and os.path.exists(path)
  out = samples.generate(workdir, step=4, prior="fitted", num_samples=2, num_frames=4, num_pairs=1, num_steps=2,
                         metric_scenes=4, far_side_scenes=0, bound_scenes=4)
  assert out.endswith(os.path.join("eval", "4", "generate_fitted"))
  with open(os.path.join(out, "metrics.json")) as f:
    m = json.load(f)
  assert m["prior"] == "fitted" and m["samples"]["prior"] == "fitted" and m["fitted_prior"]["rank"] == 4
  assert m["samples"]["frechet"]["samples"] > 0
  b = m["bounds"]
  assert b["iwae_fitted"] >= b["elbo_fitted"] and b["iwae_model"] >= b["elbo_model"]
  assert os.path.exists(os.path.join(out, "prior_samples.png"))
  # A later call that measures only the far side keeps the sample metrics and the bounds.
  samples.generate(workdir, step=4, prior="fitted", num_samples=1, num_frames=4, num_pairs=1, num_steps=2,
                   metric_scenes=0, far_side_scenes=1, bound_scenes=0)
  with open(os.path.join(out, "metrics.json")) as f:
    again = json.load(f)
  assert again["samples"] == m["samples"] and again["bounds"] == m["bounds"] and again["far_side"]["num_scenes"] == 1
  with pytest.raises(errors.UserError, match="No fitted prior for step 2"):
    samples.generate(workdir, step=2, prior="fitted")

  # The cell transformer (fit_prior --kind=transformer, generate --prior=transformer), in the same process:
  # saved beside the Gaussian's file, scored against a Gaussian on the same held-out latents, its samples
  # drawn and rendered (the sample metrics' path is the Gaussian's, above) and its bounds bounds.
  with pytest.raises(errors.UserError, match="No transformer prior for step 4.*--kind=transformer"):
    samples.generate(workdir, step=4, prior="transformer")
  with pytest.raises(errors.UserError, match="at least 16"):
    second_stage.fit_run(workdir, step=4, num_scenes=8, kind="transformer")
  logs = []
  path = second_stage.fit_run(workdir, step=4, num_scenes=32, rank=4, steps=20, kind="transformer", log=logs.append)
  assert path == os.path.join(workdir, "fitted_prior", "4_transformer.npz")
  assert "Gaussian fitted to the same latents" in logs[-1]
  out = samples.generate(workdir, step=4, prior="transformer", num_samples=2, num_frames=4, num_pairs=1,
                         num_steps=2, metric_scenes=0, far_side_scenes=0, bound_scenes=4)
  assert out.endswith(os.path.join("eval", "4", "generate_transformer"))
  assert os.path.exists(os.path.join(out, "prior_samples.png"))
  with open(os.path.join(out, "metrics.json")) as f:
    t = json.load(f)
  assert t["prior"] == "transformer" and t["fitted_prior"]["steps"] == 20
  assert t["fitted_prior"]["held_out_nats"] <= t["fitted_prior"]["held_out_nats_at_init"]
  assert np.isfinite(t["bounds"]["iwae_fitted"]) and t["bounds"]["iwae_fitted"] >= t["bounds"]["elbo_fitted"]


def test_a_gaussian_fitted_to_whole_posteriors(toy_run):
  """fit_prior --fit_to=posteriors: each scene's posterior mean and variance, of which the one-sample latents
  (same seed) are draws; the Gaussian's marginal variance is the aggregate posterior's."""
  from nerf_vae_jax import errors
  from nerf_vae_jax.evaluation import second_stage
  from nerf_vae_jax.models import fitted_prior
  _, data_dir, workdir = toy_run
  _, model, _, params, _ = run_dir.restore_params(workdir, 4)
  src = source.SceneSource("shape_scenes/tiny", "train", data_dir)
  quiet = lambda *a: None
  means, variances = second_stage.posterior_moments(model, params, src.__getitem__, 16, log=quiet)
  z = second_stage.posterior_latents(model, params, src.__getitem__, 16, log=quiet)
  assert means.shape == variances.shape == z.shape and np.all(variances > 0)
  eps = (z - means) / np.sqrt(variances)
  assert abs(eps.mean()) < 0.05 and abs(eps.std() - 1) < 0.05, (eps.mean(), eps.std())
  marginal = lambda p: np.sum(np.square(np.asarray(p.factors)), 1) + np.asarray(p.diag)
  prior, info = fitted_prior.load(second_stage.fit_run(workdir, step=4, num_scenes=16, rank=4, log=quiet))
  assert info["fit_to"] == "posteriors" and info["num_scenes"] == 16  # the Gaussian's default
  np.testing.assert_allclose(marginal(prior), means.var(0) + variances.mean(0), rtol=1e-3, atol=1e-6)
  np.testing.assert_allclose(prior.mean, means.mean(0), atol=1e-5)
  # --fit_to=samples: centred on the one-sample latents, 16 draws that miss the means' average.
  prior, info = fitted_prior.load(second_stage.fit_run(workdir, step=4, num_scenes=16, rank=4, log=quiet,
                                                       fit_to="samples"))
  assert info["fit_to"] == "samples"
  np.testing.assert_allclose(prior.mean, z.mean(0), atol=1e-5)
  assert np.abs(z.mean(0) - means.mean(0)).max() > 0.1
  with pytest.raises(errors.UserError, match="--fit_to=posteriors fits the Gaussian"):
    second_stage.fit_run(workdir, step=4, num_scenes=16, kind="transformer", fit_to="posteriors")
  # --context=training: batches cycle through the run's 1-2 context views (data.max_context=2 here).
  counts = second_stage.context_counts("training", run_dir.load_config(workdir).data)
  assert counts == (1, 2)
  moments = lambda c, n=16: second_stage.posterior_moments(model, params, src.__getitem__, n, batch_size=8,
                                                           log=quiet, context_counts=c)
  mixed, one, two = moments(counts), moments((1,)), moments((2,))
  for got, want in zip(mixed, one):
    np.testing.assert_array_equal(got[:8], want[:8])
  for got, want in zip(mixed, two):
    np.testing.assert_array_equal(got[8:], want[8:])
  assert np.abs(one[0] - two[0]).max() > 1e-3  # a second view changes the posterior
  prior, info = fitted_prior.load(second_stage.fit_run(workdir, step=4, num_scenes=16, rank=4, log=quiet,
                                                       context="training"))
  assert info["context"] == "training"
  # The Gaussian fitted to these posteriors against the model's own prior (the factor prior, 4 steps old): the
  # KL term of the ELBO that each leaves, on the same posteriors; the fit's is the closed form of its density.
  means, variances = second_stage.posterior_moments(model, params, src.__getitem__, 16, log=quiet,
                                                    context_counts=counts)  # fit_run's batches (32: one)
  assert info["kl_fitted"] == pytest.approx(second_stage.mean_kl(prior, means, variances), rel=1e-5)
  assert info["kl_fitted"] < info["kl_model"]
  with pytest.raises(errors.UserError, match="choose 4 or training"):
    second_stage.fit_run(workdir, step=4, num_scenes=16, context="all")
  with pytest.raises(errors.UserError, match="choose samples or posteriors"):
    second_stage.fit_run(workdir, step=4, num_scenes=16, fit_to="means")


def test_the_reconstructions_reference_is_the_sample_scenes_posteriors(toy_run):
  """A "prior" that draws exactly the posteriors of the scenes whose cameras the samples are seen from
  scores the reconstructions' Fréchet distance and object statistics."""
  from nerf_vae_jax.evaluation import probe_net, sample_metrics, second_stage
  _, data_dir, workdir = toy_run
  _, model, _, params, _ = run_dir.restore_params(workdir, 4)
  src = source.SceneSource("shape_scenes/tiny", "test", data_dir)
  probe = probe_net.load_or_train("shape_scenes/tiny", data_dir, log=lambda *a: None)
  z = second_stage.posterior_latents(model, params, src.__getitem__, 3, log=lambda *a: None)
  posteriors = lambda *args, **kwargs: z.reshape((3,) + model.latent_shape)
  m, _ = sample_metrics.measure(model, params, src, probe, num_scenes=3, sample_prior=posteriors, prior_name="q")
  fd = m["frechet"]
  assert np.isfinite(fd["reconstructions"]) and fd["samples"] == pytest.approx(fd["reconstructions"], rel=1e-6)
  assert "reconstructions" in sample_metrics.summary_line(m)


def test_a_second_prior_is_scored_against_the_same_references_without_rendering_them_again(toy_run, monkeypatch):
  from nerf_vae_jax.evaluation import probe_net, sample_metrics
  _, data_dir, workdir = toy_run
  _, model, _, params, _ = run_dir.restore_params(workdir, 4)
  src = source.SceneSource("shape_scenes/tiny", "test", data_dir)
  probe = probe_net.load_or_train("shape_scenes/tiny", data_dir, log=lambda *a: None)
  renders = []
  render = sample_metrics.render_latents
  monkeypatch.setattr(sample_metrics, "render_latents", lambda *a, **k: renders.append(1) or render(*a, **k))
  zeros = lambda model_, params_, key, num, temperature=1.0: np.zeros((num,) + model.latent_shape, np.float32)
  score = lambda **kw: sample_metrics.measure(model, params, src, probe, num_scenes=2, **kw)[0]["frechet"]
  # Per call: the samples, the reconstructions, and independent cells unless they are the model's own samples.
  per_call = 3 if model.factor else 2
  alone, refs = score(), {}
  first = score(references=refs)
  assert len(renders) == 2 * per_call and first == alone
  second = score(references=refs, sample_prior=zeros, prior_name="zeros")
  assert len(renders) == 2 * per_call + 1  # only the new samples
  assert {k: v for k, v in second.items() if k != "samples"} == {k: v for k, v in first.items() if k != "samples"}
  assert second["samples"] != first["samples"]
  # Another seed draws other reference sets: they are rendered again.
  score(references=refs, seed=1)
  assert len(renders) == 3 * per_call + 1 and refs["key"] == (2, 1)


def test_evaluate_bad_input_is_a_clear_error(toy_run, tmp_path):
  e, data_dir, workdir = toy_run
  r = _cmd(e, "experiments.evaluate", f"--workdir={tmp_path}")
  assert r.returncode == 1 and "is not a training workdir" in r.stderr
  r = _cmd(e, "experiments.evaluate", f"--workdir={workdir}", "--step=3")
  assert r.returncode == 1 and "No checkpoint at step 3" in r.stderr and "available: [2, 4]" in r.stderr
  r = _cmd(e, "experiments.evaluate", f"--workdir={workdir}", "--split=validation", "--num_scenes=1")
  assert r.returncode == 1 and "has no split 'validation'" in r.stderr
  # A checkpoint that does not fit config.json (as if the config had been edited).
  edited = tmp_path / "edited"
  os.makedirs(edited)
  os.symlink(os.path.join(workdir, "checkpoints"), edited / "checkpoints")
  with open(os.path.join(workdir, "config.json")) as f:
    cfg = json.load(f)
  cfg["model"]["latent_dim"] = 32
  with open(edited / "config.json", "w") as f:
    json.dump(cfg, f)
  r = _cmd(e, "experiments.evaluate", f"--workdir={edited}", "--num_scenes=1")
  assert r.returncode == 1 and "does not fit the model of" in r.stderr, r.stderr[-2000:]
  assert os.path.isdir(os.path.join(workdir, "checkpoints", "4"))  # nothing moved aside
  # A damaged config.json: one line that names the file, no traceback.
  damaged = tmp_path / "damaged"
  os.makedirs(damaged)
  with open(damaged / "config.json", "w") as f:
    f.write(json.dumps(cfg)[:100])
  r = _cmd(e, "experiments.evaluate", f"--workdir={damaged}", "--num_scenes=1")
  assert r.returncode == 1 and "config.json is not valid JSON" in r.stderr and "Traceback" not in r.stderr


def test_learning_curve_evaluates_each_checkpoint_once_against_training_minutes(toy_run, tmp_path):
  from nerf_vae_jax.evaluation import curves
  _, _, workdir = toy_run
  rows = curves.learning_curve(workdir, num_scenes=2)
  assert [r["step"] for r in rows] == [2, 4]
  assert 0 < rows[0]["elapsed_minutes"] < rows[1]["elapsed_minutes"]
  for r in rows:
    assert 0 <= r["k4_mask_iou"] <= 1 and r["k1_object_mse"] > 0 and np.isfinite(r["k4_psnr"])
  cache = os.path.join(workdir, "eval", "curve_test.json")
  with open(cache) as f:
    assert json.load(f)["rows"] == rows
  assert curves.learning_curve(workdir, num_scenes=2) == rows  # from the cache
  curves.plot({"toy": rows}, str(tmp_path / "curves.png"))
  assert (tmp_path / "curves.png").stat().st_size > 1000
  assert "| toy | 4 |" in curves.last_row_table({"toy": rows})


@pytest.mark.slow
def test_demo_runs_end_to_end_and_prints_its_table(runner_env, tmp_path):
  """`make demo`'s command with 2 steps and 2 scenes on the tests' small dataset (already built, so the demo
  finds it): build, train, evaluate, summary."""
  e, data_dir = runner_env
  r = _cmd(e, "experiments.demo", f"--out={tmp_path}", "--steps=2", "--num_scenes=2",
           "--dataset=shape_scenes/tiny", f"--data_dir={data_dir}")
  assert r.returncode == 0, r.stderr[-3000:]
  assert "Novel views of 2 held-out test scenes (step 2)" in r.stdout
  rows = [l for l in r.stdout.splitlines() if re.match(r"\s+[1-4]\s+0\.\d+", l)]
  assert [int(row.split()[0]) for row in rows] == [1, 4], r.stdout[-2000:]
  assert "mask IoU" in r.stdout and "hazy" in r.stdout and "fog" in r.stdout
  assert os.path.exists(tmp_path / "contact_sheet.png")
  assert os.path.exists(tmp_path / "train_tiny" / "eval" / "2" / "report.html")
  assert "Samples from the prior (" in r.stdout and "Fréchet distance" in r.stdout, r.stdout[-2000:]
  assert os.path.exists(tmp_path / "train_tiny" / "eval" / "2" / "generate" / "samples_vs_data.png")
  assert "Held-out bounds from 4 views: IWAE" in r.stdout, r.stdout[-2000:]
  with open(tmp_path / "train_tiny" / "config.json") as f:
    saved = json.load(f)
  # --steps sets the run's length only; tiny's KL warm-up (None) then spans it (test_update)
  assert saved["train"]["num_steps"] == 2 and saved["loss"]["beta_warmup_steps"] is None
