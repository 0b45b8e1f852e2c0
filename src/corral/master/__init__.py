"""The master process: the arbiter, its listeners, exits, upgrades, systemd and daemon mode."""
