"""Pfeiffer Vacuum instruments: TPG 26x/36x gauge controllers."""
