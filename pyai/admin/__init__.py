"""The administrator's commands: serve, verify, the HPSS emulator's tools."""
