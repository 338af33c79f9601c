"""Host runtime: what a user installs to drive the accelerator (protocol codec, driver)."""
