"""The bundled configs, installed as the data subpackage ``neuromimic.configs`` (see
``pyproject.toml``): ``neuromimic fit --config NAME`` takes them by name, ``neuromimic configs
list`` lists them and ``neuromimic configs copy NAME`` copies one out to edit
(`neuromimic.bundled`).

This file only makes the folder a package, which an editable install needs to map it."""
