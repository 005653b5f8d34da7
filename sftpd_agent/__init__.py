"""sftpd-agent: sends SMS campaigns to MTarget over SFTP, exactly once.

The package reads as the pipeline: ``outbox`` -> ``reader``/``validation`` -> ``plan`` ->
publication over ``sftp`` -> ``reports`` -> notification; ``gsm``, ``numbers``, ``naming``
and ``window`` are the pure rules underneath; ``cli`` and ``config`` are the shell.
"""

__version__ = "0.1.0"
