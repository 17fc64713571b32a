"""HighFinesse wavelength meters: the wlmData driver, its simulated twins, its analog outputs."""
