"""Avatar stage: replica creation (`replica_builder`, over `replica_sources`, `face_landmarks`, `person_matting`)
and renderers (`portrait`, over `streaming`).

Adding a neural lip-sync backend (Wav2Lip / MuseTalk style): subclass `streaming.StreamingAvatar`, implement
`render_frame(index, audio, cue)` (use `cue.window(before_s, after_s)` for the model's audio context and load
weights from a local path given in its yaml), and add `cvi_lab/conf/avatar/<name>.yaml` with its `_target_`. It must
accept `replica_dir`, `apply_greenscreen` and `seed` keyword arguments; the engine does not change.
"""
