"""The API: requests and responses, routes next to their operations, signatures and policies, OpenAPI, the console."""
