"""A PAI-compatible model registry for Function Compute, backed by OSS or a local directory."""
