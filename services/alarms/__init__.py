"""Alarms: rules on the lab's readings and states, their states, and who is told.

- rules.py: the ``[[alarms]]`` rules and ``[notify.NAME]`` channels of the config
- conditions.py: when a rule's condition holds (thresholds, rates, staleness, events)
- machine.py: one alarm's states (ok, pending, firing, resolved), acks and silences
- notify.py: e-mail and webhook delivery, each channel on its own worker thread
- history.py: every transition stored in the logger's database, states reloaded
- service.py: the service that reads the hub and ties the above together
- api.py, command.py: ``/api/v1/alarms`` and ``ionlab alarms``

See docs/alarms.md.
"""
