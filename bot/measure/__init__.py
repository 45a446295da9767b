"""Measurement: what a task was worth, and what a report may show.

- ``outcomes``: each task's outcome state (explicit, implicit, weak, none) and the click/sweep rules that set it;
- ``facts``: the ``measure_task_facts`` table, one narrow row per task, refreshed incrementally;
- ``signals``: waste and gaming signals over the facts (signals, not verdicts);
- ``report`` and ``report_html``: the report document, its CSV and Rich tables, and its self-contained HTML;
- ``usage``: the person's own ``/usage`` text (pure; the listener and the Home job both use it).

Nothing here imports ``handlers`` or ``workers``.
"""
