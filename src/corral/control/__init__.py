"""The control socket's wire format and the `corral ctl` client (the server side is in
corral.master.control)."""
