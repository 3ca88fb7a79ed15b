"""TorchServe handler for the ``brain_tumor`` model (packed into the .mar with the core package)."""
