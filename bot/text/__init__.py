"""Pure text functions every surface uses: token estimates and trimming (``tokens``), redaction of secrets before
text reaches the model or the ledger (``redact``), and hygiene of model output before it is posted
(``safety``)."""
