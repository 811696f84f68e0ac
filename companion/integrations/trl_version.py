r"""Which TRL releases the bridge of :mod:`companion.integrations.trl` accepts.

The bridge overrides private methods of TRL's ``GRPOTrainer``; those may change in any release.
:data:`TESTED_TRL_VERSIONS` are the releases ``make test-trl-versions`` runs the bridge's tests
on; :data:`SUPPORTED_TRL` accepts every patch release of those minor releases. Any other
version is refused unless the user opts in (then it runs with a warning, and the trainer's
first-step check still compares the advantages reaching the loss with the companion's).
Importing this module imports neither torch nor TRL.

Derived in: chapter 10.
"""

from __future__ import annotations

import os
import warnings

__all__ = [
    "ALLOW_UNTESTED_ENV",
    "INSTALL_HINT",
    "SUPPORTED_TRL",
    "TESTED_TRL_VERSIONS",
    "UnsupportedTRLVersionError",
    "UntestedTRLVersionWarning",
    "check_trl_internals",
    "check_trl_version",
]

_PRIVATE_HOOKS = ("_calculate_rewards", "_generate_and_score_completions", "_compute_loss")

#: The TRL releases whose private methods the bridge overrides and which it is tested on.
TESTED_TRL_VERSIONS: tuple[str, ...] = ("1.15.0", "1.16.0")
#: Accepted without opt-in: every patch release of the tested minor releases.
SUPPORTED_TRL = ">=1.15,<1.17"
#: Set to 1 to run with a TRL outside :data:`SUPPORTED_TRL` (a warning is given).
ALLOW_UNTESTED_ENV = "MAXRL_ALLOW_UNTESTED_TRL"
INSTALL_HINT = f'pip install "trl{SUPPORTED_TRL}"  (or pip install -e ".[scale]")'


class UnsupportedTRLVersionError(RuntimeError):
    """The installed TRL is outside :data:`SUPPORTED_TRL` and the user did not opt in."""


class UntestedTRLVersionWarning(UserWarning):
    """Running with a TRL outside :data:`SUPPORTED_TRL`, because the user opted in."""


def check_trl_version(version: str | None = None, *, allow_untested: bool | None = None) -> str:
    """Return the TRL version if it lies in :data:`SUPPORTED_TRL`; otherwise raise, or warn when
    the user opted in (``allow_untested=True``, or the environment variable
    :data:`ALLOW_UNTESTED_ENV` set to 1).

    The bridge overrides TRL's private ``_calculate_rewards``, ``_generate_and_score_completions``
    and ``_compute_loss`` and reads private attributes (``reward_weights``, ``num_generations``,
    ``_logs``), which may change in any release.

    Derived in: chapter 10.
    """
    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion, Version

    if version is None:
        import trl  # the installed release (imported only here: this module stays light)

        version = trl.__version__
    found = version
    try:
        supported = SpecifierSet(SUPPORTED_TRL).contains(Version(found), prereleases=False)
    except InvalidVersion:
        supported = False
    if supported:
        return found
    if allow_untested is None:
        allow_untested = os.environ.get(ALLOW_UNTESTED_ENV, "").lower() in ("1", "true", "yes")
    message = (
        f"companion.integrations.trl supports trl{SUPPORTED_TRL} (tested: "
        f"{', '.join(TESTED_TRL_VERSIONS)}), found trl=={found}; it overrides private methods "
        "of GRPOTrainer, which change between releases"
    )
    if not allow_untested:
        raise UnsupportedTRLVersionError(
            f"{message}. Install a supported version with {INSTALL_HINT}, or opt in with "
            f"{ALLOW_UNTESTED_ENV}=1 (or allow_untested_trl=True): the trainer then still checks "
            "on its first step that the advantages reaching the loss are the companion's"
        )
    warnings.warn(
        f"{message}; running anyway ({ALLOW_UNTESTED_ENV} / allow_untested_trl). The first "
        "optimizer step checks that the advantages reaching the loss are the companion's.",
        UntestedTRLVersionWarning,
        stacklevel=2,
    )
    return found


def check_trl_internals(trainer_class: type) -> None:
    """Raise a clear error when the installed TRL cannot run the bridge here: a private method it
    overrides is missing, or TRL's log-probability kernel is unavailable (trl 1.15 computes them
    with a Triton kernel only, so its ``GRPOTrainer`` needs the ``triton`` package and a CUDA or
    XPU device; trl 1.16 added a plain-torch path).

    Derived in: chapter 10.
    """
    import trl
    import trl.trainer.utils as trl_utils

    missing = [name for name in _PRIVATE_HOOKS if not hasattr(trainer_class, name)]
    if missing:
        raise UnsupportedTRLVersionError(
            f"trl=={trl.__version__}: {trainer_class.__name__} has no {missing}; the bridge "
            f"cannot hook into this version. Install one of trl{SUPPORTED_TRL}"
        )
    if getattr(trl_utils, "_ChunkedLogProbFunction", True) is None:
        raise RuntimeError(
            f"trl=={trl.__version__} computes log-probabilities with a Triton kernel only: its "
            "GRPOTrainer needs the triton package and a CUDA or XPU device, and fails on this "
            "machine ('NoneType' object has no attribute 'apply'). On a CPU, install trl>=1.16"
        )
