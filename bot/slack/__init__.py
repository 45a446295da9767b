"""Slack plumbing shared by listeners and workers: the Bolt app and its WSGI wrappers (``app``), Block Kit
builders (``blocks``), the shipped manifest (``manifest``, ``slack_manifest.yaml``) and usergroup memberships
(``usergroups``)."""
