"""Bridges from the companion's estimators to existing distributed RL trainers.

* :mod:`companion.integrations.trl`: MaxRL (and every other companion estimator) inside
  Hugging Face TRL's ``GRPOTrainer``, plus offline helpers that put the maze task of chapter 9
  through TRL (a tokenizer over the maze vocabulary, a tiny causal LM built from a config, a
  prompt dataset and the verifier as the reward function). Needs the optional packages:
  ``pip install -e ".[scale]"``.
* :mod:`companion.integrations.trl_maze`: a runnable script, ``python -m
  companion.integrations.trl_maze --steps 2``, that also runs under ``torchrun`` and
  ``accelerate launch`` with several processes.

Derived in: chapter 10.
"""
