"""Email triage jobs (being split out of ``workers/triage.py``): ``actuator`` changes mailboxes."""
