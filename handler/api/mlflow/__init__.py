"""MLflow's model registry REST API, served over the same models as PAI's API (docs/mlflow.md)."""
