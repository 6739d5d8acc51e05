"""cvi-lab: a local, measurable twin of a real-time Conversational Video Interface."""

__version__ = "0.1.0"
