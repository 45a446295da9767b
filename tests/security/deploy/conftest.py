"""The deploy fixtures (GitHub stand-in, deploy policy, injected deploy clients) for the deploy attacks."""

from tests.deploy.conftest import ci, deps, policy_file, settings, settings_overrides  # noqa: F401
