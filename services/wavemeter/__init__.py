"""The wavemeter server: background acquisition, HTTP API, JSON-RPC, client and laser locks."""
