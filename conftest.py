"""The kernel suite as pytest items: the plugin is runner/plugin.py."""

pytest_plugins = ["runner.plugin"]
