"""neuromimic: neural controllers that drive musculoskeletal bodies to imitate movement."""

__version__ = "0.1.0"
