"""The provider's SFTP server as the agent sees it: the interface, a local double,
asyncssh, the session."""
