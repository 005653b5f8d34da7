"""Telling people: the durable queue, e-mail and command hooks. One job a module:

    payload.py  the event as JSON (numbers masked, reply texts left out); secrets out of errors
    queue.py    routing events to channels, the durable queue, the sender task (Notifications)
    email.py    the e-mail for an event (pure), and sending it over SMTP
    hooks.py    running a hook command (bounded output, allow-listed environment, group kill)
    alert.py    ``sftpd-agent alert``: the e-mail that says systemd gave up on the agent

The queue's rows are SQL, so they live in ``store/notifications.py``.
"""
