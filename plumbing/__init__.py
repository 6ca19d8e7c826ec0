"""Plumbing shared by both wings (``umt`` and ``symbolic``), which never import each other.

- :mod:`plumbing.errors`: :class:`UserError`, the one type for a user's mistake.
- :mod:`plumbing.device`: :func:`resolve_device` (auto / cpu / cuda / cuda:N, torchrun ranks).
- :mod:`plumbing.atomic`: :func:`atomic_write` (temp name, fsync, rename) and its users.
- :mod:`plumbing.config`: :func:`to_dataclass`, the one way to validate a config.
- :mod:`plumbing.signals`: :func:`stop_on_signals`, a clean stop (checkpoint, one line, exit
  status 128 + signal) on Ctrl-C or SIGTERM.
"""
