"""``roma.train``: ROMA's RL training on TRL's GRPOTrainer (method.md §2–§8).

- :mod:`roma.train.config` — :class:`RomaConfig` (``GRPOConfig`` + ROMA's options);
- :mod:`roma.train.views` — the degraded views of a step, as functions of (args, step, examples, processor);
- :mod:`roma.train.pass2` — pass 2: which (view, sequence) pairs run, and running them;
- :mod:`roma.train.trainer` — :class:`RomaTrainer`, the TRL hooks;
- :mod:`roma.train.cli` — ``roma train``.
"""

from roma.train.config import RomaConfig
from roma.train.trainer import RomaTrainer

__all__ = ["RomaConfig", "RomaTrainer"]
