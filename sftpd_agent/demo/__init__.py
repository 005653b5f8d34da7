"""``sftpd-agent demo``: the whole job against the embedded simulator."""
