"""Shared fixtures: the provider simulator and a real OpenSSH sshd (see tests/servers.py)."""

pytest_plugins = ["tests.servers"]
