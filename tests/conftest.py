"""Shared fixtures: the provider simulator and a real OpenSSH sshd (tests/servers.py), and the
real daemon against it (tests/daemon_harness.py)."""

pytest_plugins = ["tests.servers", "tests.daemon_harness"]
