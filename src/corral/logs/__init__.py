"""Logging: the logger class, its setup from user configs, the access log and syslog."""
