"""The model files neuromimic authors (MJCF), installed as the data subpackage
``neuromimic.assets`` (see ``pyproject.toml``); find them with `neuromimic.bundled.asset_path`.

This file only makes the folder a package, which an editable install needs to map it."""
