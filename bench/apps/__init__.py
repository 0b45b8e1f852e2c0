"""The applications every server in the benchmark serves, importable as `apps.<module>`."""
