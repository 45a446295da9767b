"""Clawback's shared core, its domain packages, and the processes that wire them together.

Layers (``tests/unit/test_layers.py`` holds them: no import circles; ``bot`` never imports ``handlers`` or
``workers`` except the wiring modules it names):

- **Core** (the modules at this level), one concern each, used by every surface: ``settings`` (the only reader
  of the environment), ``errors`` (the exception tree), ``messages`` (what a person reads), ``db`` and
  ``models`` (the SQL layer, every table), ``migrate`` (Alembic, schema checks), ``ledger`` (tasks, LLM calls,
  actions, outcomes), ``audit`` (the hash-chained log), ``policy`` (who may do what), ``autonomy`` (what the
  agent may do on its own, earned per person and action), ``controls`` (kill switch), ``budget`` (tokens and
  rate, in Redis), ``queue`` (RQ), ``llm`` (the model gateway), ``ingress`` (request → task).
- **Plumbing**: ``bot.slack`` (the Bolt app, the Socket Mode client ``socket_mode``, Block Kit builders, the
  shipped manifest, usergroups), ``bot.text`` (pure text: token estimates, redaction, output hygiene).
- **Domains**, a package per concern: ``bot.mail`` (mailboxes, the poller, drafts), ``bot.deploy`` (plans,
  requests, executors), ``bot.measure`` (outcomes, facts, signals, reports, adoption, the ``/usage`` text).
- **Processes and wiring** (may import listeners and workers): ``bot.slack.app`` (the web and Socket Mode
  app) and ``bot.ops`` (``cli``, ``demo``, ``doctor``, ``worker``, ``metrics``, ``progress``, and
  ``embedded_redis`` for machines without a Redis).
- **Local stand-ins**: ``bot.standins`` (Slack, LLM, Exchange, Graph, CI over real HTTP).

Listeners live in ``handlers/`` (acknowledge and enqueue), jobs in ``workers/`` (think and act).
"""
