"""Bridges from the companion's estimators to existing distributed RL trainers.

* :mod:`companion.integrations.trl`: MaxRL (and every other companion estimator) inside
  Hugging Face TRL's ``GRPOTrainer``, with a first-step check that the advantages reaching the
  loss are the companion's. Generic: it never imports a toy experiment.
* :mod:`companion.integrations.trl_version`: the TRL releases the bridge accepts and is tested on.
* :mod:`companion.integrations.trl_records`: record what reaches a TRL loss and regroup it by
  prompt, over one process or all of them.
* :mod:`companion.integrations.trl_maze`: the maze task of chapter 9 through TRL (tokenizer,
  model, dataset, reward, warm start, training, comparison) and its command line,
  ``python -m companion.integrations.trl_maze run|compare``.

Needs the optional packages: ``pip install -e ".[scale]"``. For flat batches with a group index
(verl, prime-rl), see :func:`companion.estimators.grouped`.

Derived in: chapter 10.
"""
