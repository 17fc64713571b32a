"""What the services share on the wire: the pub/sub hub, SSE, auth and JSON handlers."""
