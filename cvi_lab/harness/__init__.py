"""One harness for an in-process server and for measuring a call (demo, lab live mode, notebook,
benchmarks, e2e tests): `server` starts and stops it, `call` drives the scripted participant and measures
what it hears, `voice` is what the participant says, `turns` the per-turn rows of a measured call."""
