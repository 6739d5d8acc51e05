"""Quality measurements computed from outputs only (frames, audio, transcripts), reused by the lab."""
