"""Worker classes, looked up by the `worker_class` setting."""
