"""Local stand-ins: real HTTP servers that speak the protocols Clawback talks to.

They are shipped with the product so that ``clawback demo`` and the test suite exercise the
same client code paths as production (``slack_sdk``, ``openai``, ``exchangelib``, the GitHub
REST API) without credentials or network. Every stand-in listens on 127.0.0.1 only, records the
requests it served, and can be told to fail on purpose.
"""
