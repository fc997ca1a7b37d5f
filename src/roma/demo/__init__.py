"""``roma demo``: the whole ROMA experiment at CPU scale (see :mod:`roma.demo.run`).

- :mod:`roma.demo.config` — :class:`~roma.demo.config.DemoConfig`, the variants, ``--quick``, output names;
- :mod:`roma.demo.stages` — the stage cache and the stage bodies (model, SFT, RL, evaluation);
- :mod:`roma.demo.report` — aggregation over seeds, ``demo-summary.json`` and ``report.md``;
- :mod:`roma.demo.plots` — the report's two plots;
- :mod:`roma.demo.run` — :func:`~roma.demo.run.run_demo` and the ``roma demo`` command.
"""
