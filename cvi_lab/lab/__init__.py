"""The lab: scripted participants through real calls, metrics, MLflow logging, sweeps and comparisons."""
