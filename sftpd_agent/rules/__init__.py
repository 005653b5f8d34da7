"""The rules, pure: no file, no network, no clock of their own (validation, GSM 03.38,
numbers, file names, the marketing window, planning, the state machine, report lines)."""
