"""neuromimic: neural controllers that drive musculoskeletal bodies to imitate movement."""

__version__ = "0.1.0"


def load_controller(path, map_location="cpu"):
    """A trained controller as a plain `torch.nn.Module` (see `neuromimic.models.load_controller`)."""
    from neuromimic.models.export import load_controller as load

    return load(path, map_location=map_location)


def load_action_map(path, map_location="cpu"):
    """How the actions of a trained controller become simulator controls, as a plain
    `torch.nn.Module` (see `neuromimic.models.export.load_action_map`)."""
    from neuromimic.models.export import load_action_map as load

    return load(path, map_location=map_location)
