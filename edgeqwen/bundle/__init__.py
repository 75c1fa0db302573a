"""The bundle: a folder per (model, target) that runs on the device with only its runtime installed."""
