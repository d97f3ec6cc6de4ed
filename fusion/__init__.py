"""fusion: drive logs (ROS bags) in, 4D pre-labels out."""

__version__ = "0.1.0"
