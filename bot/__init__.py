"""Clawback's shared core, its domain packages, and the processes that wire them together.

Layers (``tests/unit/test_layers.py`` holds them: no import circles; ``bot`` never imports ``handlers`` or
``workers`` except the wiring modules it names):

- **Core** — one concern each, used by every surface:
  ``settings`` (the only reader of the environment), ``errors`` (the exception tree), ``messages`` (what a
  person reads), ``db`` and ``models`` (the SQL layer, every table), ``migrate`` (Alembic, schema checks),
  ``ledger`` (tasks, LLM calls, actions, outcomes), ``audit`` (the hash-chained log), ``policy`` and
  ``usergroups`` (who may do what), ``budget`` (tokens and rate, in Redis), ``controls`` (kill switch),
  ``queue`` (RQ), ``llm`` (the model gateway), ``ingress`` (request → task), ``tokens``, ``redact``,
  ``safety`` (pure text checks), ``blocks`` (Block Kit builders), ``metrics`` (Prometheus).
- **Domains** — a package per concern: ``bot.mail`` (mailboxes, the poller, drafts), ``bot.deploy`` (plans,
  requests, executors), ``bot.measure`` (outcomes, facts, signals, reports, the ``/usage`` text).
- **Processes and wiring** (may import listeners and workers): ``slack_app`` (the web and socket apps, with
  ``slack_socket``, the Socket Mode client), ``worker`` (the RQ worker), ``cli`` (``clawback``), ``demo``
  (``clawback demo``), and the CLI's helpers ``doctor``, ``progress``, ``manifest`` (the shipped Slack
  manifest, which ``doctor`` checks against).
- **Local stand-ins**: ``bot.standins`` (Slack, LLM, Exchange, Graph, CI over real HTTP) and
  ``embedded_redis``, for the demo, the tests and machines without services.

Listeners live in ``handlers/`` (acknowledge and enqueue), jobs in ``workers/`` (think and act).
"""
