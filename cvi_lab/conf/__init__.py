"""The shipped Hydra config (package data), loaded as `pkg://cvi_lab.conf`; see `cvi_lab.config`."""
