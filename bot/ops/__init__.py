"""The processes and operator tools: the ``clawback`` CLI (``cli``), ``demo``, ``doctor``, the RQ worker process
(``worker``), Prometheus ``metrics``, terminal ``progress`` bars and the ``embedded_redis`` server used where no
Redis is configured."""
