"""The lab as ARTIQ controllers: pc_rpc targets, the dataset updater, device_db entries."""
