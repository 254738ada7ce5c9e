"""Each config variant resolves to the fields pinned in tests/golden/ (regenerate a file on purpose:
``python -m tests.test_configs VARIANT`` prints it), and overrides keep their types."""

import json
import pathlib
import sys

import pytest
from ml_collections import config_dict

from experiments.configs import shape_scenes

GOLDEN = pathlib.Path(__file__).resolve().parent / "golden"


def resolved(variant: str) -> str:
  return json.dumps(json.loads(shape_scenes.get_config(variant).to_json_best_effort(sort_keys=True)), indent=1,
                    sort_keys=True)


@pytest.mark.parametrize("variant", list(shape_scenes.VARIANTS))
def test_variant_matches_its_golden_file(variant):
  assert resolved(variant) == (GOLDEN / f"shape_scenes_{variant}.json").read_text()


def test_every_table_names_only_fields_of_the_base():
  flat = set(_flat(shape_scenes.base().to_dict()))
  for name, table in shape_scenes.VARIANTS.items():
    assert set(table) <= flat, (name, set(table) - flat)


def test_tiny_long_is_tiny_plus_its_schedule():
  tiny, long = _flat(shape_scenes.get_config("tiny").to_dict()), _flat(shape_scenes.get_config("tiny_long").to_dict())
  assert {k for k in tiny if tiny[k] != long[k]} == {"variant", "train.num_steps", "train.checkpoint_every",
                                                    "train.keep_checkpoints"}


def test_placeholders_stay_overridable_with_their_type():
  c = shape_scenes.get_config("tiny")
  assert c.loss.beta_warmup_steps is None and c.train.memory_limit_gib is None
  c.loss.beta_warmup_steps = 500  # an int placeholder: None in tiny, an int elsewhere
  with pytest.raises(TypeError):
    c.loss.beta_warmup_steps = "soon"
  assert isinstance(shape_scenes.get_config("global").loss.beta_warmup_steps, int)
  assert isinstance(c.train.get_ref("memory_limit_gib"), config_dict.FieldReference)


def _flat(d, prefix=""):
  out = {}
  for k, v in d.items():
    out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v})
  return out


if __name__ == "__main__":
  print(resolved(sys.argv[1]))
